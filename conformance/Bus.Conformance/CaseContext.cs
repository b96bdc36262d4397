using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Bus.Conformance;

/// <summary>What a case works with: a fresh bus, unique names, bounded waits, and counters for the matrix.</summary>
public sealed class CaseContext
{
    private static int _sequence;
    private readonly ConcurrentDictionary<string, long> _counts = new(StringComparer.Ordinal);
    private readonly string _run = Guid.NewGuid().ToString("N")[..6];
    private readonly List<string> _notes = [];
    private readonly ConcurrentDictionary<string, bool> _topics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _groups = new(StringComparer.Ordinal);
    private volatile string? _waitingFor; // the case's wait in progress, for a case that runs out of time

    internal CaseContext(ConformanceBackend backend, IMessageBus bus, string caseName)
    {
        Backend = backend;
        Bus = bus;
        CaseName = caseName;
        WaitTimeout = TimeSpan.FromSeconds(10 * backend.TimeoutScale);
    }

    /// <summary>The backend under test.</summary>
    public ConformanceBackend Backend { get; }

    /// <summary>A bus created for this case alone.</summary>
    public IMessageBus Bus { get; }

    /// <summary>The case's name.</summary>
    public string CaseName { get; }

    /// <summary>The backend's declared capabilities.</summary>
    public BackendCapabilities Capabilities => Bus.Capabilities;

    /// <summary>How long a wait may take before the case fails.</summary>
    public TimeSpan WaitTimeout { get; }

    /// <summary>
    /// Where the case was, for a case that ran out of time: in one of its waits (which), or in a call to the bus.
    /// </summary>
    internal string WhereItWas => _waitingFor is { } what
        ? $"it was waiting for {what}"
        : "it was in a call to the bus, not in one of its waits (creating a consumer or subscription, publishing, settling or disposing)";

    /// <summary>A short quiet period: how long to watch for something that must not happen.</summary>
    public TimeSpan QuietPeriod => TimeSpan.FromMilliseconds(1500 * Backend.TimeoutScale);

    /// <summary>What the case counted, for the matrix.</summary>
    public IReadOnlyDictionary<string, long> Counts => _counts;

    /// <summary>Remarks to show with a pass (what was emulated or not checked).</summary>
    public IReadOnlyList<string> Notes => _notes;

    /// <summary>A topic name unique to this run, legal on every backend (lower-case letters, digits, '-').</summary>
    /// <param name="hint">A short word.</param>
    public string Topic(string hint)
    {
        var topic = $"c{Interlocked.Increment(ref _sequence)}-{hint}-{_run}";
        _topics.TryAdd(topic, true);
        return topic;
    }

    /// <summary>A group name unique to this run.</summary>
    /// <param name="hint">A short word.</param>
    public string Group(string hint = "g")
    {
        var group = $"{hint}-{_run}-{Interlocked.Increment(ref _sequence)}";
        _groups.TryAdd(group, true);
        return group;
    }

    /// <summary>Every topic name this case made (deleted with the groups after the case).</summary>
    internal IReadOnlyCollection<string> TopicsMade => [.. _topics.Keys];

    /// <summary>Every group name this case made.</summary>
    internal IReadOnlyCollection<string> GroupsMade => [.. _groups.Keys];

    /// <summary>Records a count for the matrix.</summary>
    /// <param name="name">What was counted.</param>
    /// <param name="value">The count.</param>
    public void Report(string name, long value) => _counts[name] = value;

    /// <summary>Adds a remark to the result.</summary>
    /// <param name="note">The remark.</param>
    public void Note(string note)
    {
        lock (_notes)
        {
            _notes.Add(note);
        }
    }

    /// <summary>Fails the case unless <paramref name="condition"/> holds.</summary>
    /// <param name="condition">The assertion.</param>
    /// <param name="message">What was expected and seen.</param>
    public static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new CaseFailedException(message);
        }
    }

    /// <summary>Fails the case unless the values are equal.</summary>
    /// <typeparam name="T">The value type.</typeparam>
    /// <param name="expected">Expected.</param>
    /// <param name="actual">Seen.</param>
    /// <param name="what">What is compared.</param>
    public static void CheckEqual<T>(T expected, T actual, string what)
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual))
        {
            throw new CaseFailedException($"{what}: expected {Show(expected)}, saw {Show(actual)}");
        }
    }

    /// <summary>Waits until <paramref name="condition"/> holds, or fails the case with <paramref name="seen"/>.</summary>
    /// <param name="condition">Polled every 10 ms.</param>
    /// <param name="what">What is awaited.</param>
    /// <param name="seen">Describes the state when the wait fails.</param>
    /// <param name="timeout">Overrides <see cref="WaitTimeout"/>.</param>
    public async Task WaitUntilAsync(Func<bool> condition, string what, Func<string>? seen = null, TimeSpan? timeout = null)
    {
        var limit = timeout ?? WaitTimeout;
        var watch = Stopwatch.StartNew();
        _waitingFor = what;
        try
        {
            while (!condition())
            {
                if (watch.Elapsed > limit)
                {
                    throw new CaseFailedException($"timed out after {limit.TotalSeconds:0.#} s waiting for {what}" + (seen is null ? "" : $"; seen: {seen()}"));
                }

                await Task.Delay(10).ConfigureAwait(false);
            }
        }
        finally
        {
            _waitingFor = null;
        }
    }

    /// <summary>Receives one message or fails the case after <see cref="WaitTimeout"/>.</summary>
    /// <param name="consumer">The consumer.</param>
    /// <param name="what">What is awaited.</param>
    public async Task<ReceivedMessage> ReceiveAsync(MessageConsumer consumer, string what)
    {
        ArgumentNullException.ThrowIfNull(consumer);
        using var timeout = new CancellationTokenSource(WaitTimeout);
        _waitingFor = what;
        try
        {
            return await consumer.ReceiveAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            throw new CaseFailedException($"timed out after {WaitTimeout.TotalSeconds:0.#} s waiting for {what}");
        }
        finally
        {
            _waitingFor = null;
        }
    }

    /// <summary>Returns a message if one arrives within <paramref name="period"/>, else <see langword="null"/>.</summary>
    /// <param name="consumer">The consumer.</param>
    /// <param name="period">How long to watch; <see cref="QuietPeriod"/> by default.</param>
    public async Task<ReceivedMessage?> ReceiveWithinAsync(MessageConsumer consumer, TimeSpan? period = null)
    {
        ArgumentNullException.ThrowIfNull(consumer);
        using var timeout = new CancellationTokenSource(period ?? QuietPeriod);
        try
        {
            return await consumer.ReceiveAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return null;
        }
    }

    /// <summary>A bus of the same backend, for cases that need two (disposed by the caller).</summary>
    /// <param name="configure">Changes to the options.</param>
    public IMessageBus CreateBus(Action<BusOptions>? configure = null)
    {
        var options = Backend.CreateOptions();
        configure?.Invoke(options);
        return MessageBus.Create(options, Backend.LoggerFactory);
    }

    /// <summary>A message whose body is <c>text</c> and whose <c>seq</c> header is <paramref name="sequence"/>.</summary>
    /// <param name="text">The body text.</param>
    /// <param name="key">The key.</param>
    /// <param name="sequence">The sequence number.</param>
    public static OutgoingMessage Numbered(string text, string? key, int sequence)
    {
        var message = OutgoingMessage.FromText(text, key);
        message.Headers["seq"] = sequence.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return message;
    }

    /// <summary>The <c>seq</c> header of a message made by <see cref="Numbered"/>.</summary>
    /// <param name="message">The message.</param>
    public static int SequenceOf(ReceivedMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return message.Headers.TryGetValue("seq", out var text) ? int.Parse(text, System.Globalization.CultureInfo.InvariantCulture) : -1;
    }

    internal ILogger? Logger => Backend.LoggerFactory?.CreateLogger("Bus.Conformance." + CaseName);

    private static string Show<T>(T value) => value is null ? "null" : value is string s ? $"'{s}'" : value.ToString() ?? "";
}
