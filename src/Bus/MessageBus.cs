using System.Collections.Concurrent;
using Bus.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Bus;

/// <summary>
/// The bus: validation, dispatch, retries, dead-lettering, redrive, request/reply and telemetry, over whichever
/// <see cref="MessageTransport"/> the connection URI selects.
/// </summary>
public sealed partial class MessageBus : IMessageBus
{
    private readonly BusOptions _options;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger _logger;
    private readonly string _redactedUrl;
    private readonly ConcurrentDictionary<string, Task> _ensuredTopics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<IAsyncDisposable, byte> _live = new();
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private volatile bool _connected;
    private IReadOnlyList<(string Text, bool Piece)>? _secrets;
    private int _disposed;
    private int _publishingClosed; // set by DisposeAsync once subscriptions are closed: publishes are refused from then
    private int _publishing;       // publishes under way that disposing waits for

    private MessageBus(MessageTransport transport, BusOptions options, ILoggerFactory loggerFactory, string redactedUrl)
    {
        Transport = transport;
        _options = options;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<MessageBus>();
        _redactedUrl = redactedUrl;
    }

    /// <inheritdoc />
    public string Backend => Transport.Backend;

    /// <inheritdoc />
    public BackendCapabilities Capabilities => Transport.Capabilities;

    /// <summary>The URI this bus was built from, with secrets replaced by <c>***</c>.</summary>
    public string RedactedUrl => _redactedUrl;

    internal MessageTransport Transport { get; }

    /// <summary>Builds a bus for <paramref name="options"/>. Connects lazily (or call <see cref="ConnectAsync"/>).</summary>
    /// <param name="options">The options (copied).</param>
    /// <param name="loggerFactory">Logging; none by default.</param>
    /// <exception cref="BusConfigurationException">The URI is invalid, its scheme is unknown, or a setting is invalid.</exception>
    public static MessageBus Create(BusOptions options, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        var copy = options.Clone();
        BusOptionsValidation.ThrowIfInvalid(copy);
        var uri = BusUri.Parse(copy.Url);
        var factory = BusTransports.Resolve(uri);
        loggerFactory ??= NullLoggerFactory.Instance;
        var context = new TransportContext(uri, copy, loggerFactory);
        MessageTransport transport;
        try
        {
            transport = factory.Create(context);
        }
        catch (BusException ex)
        {
            // A transport names what it rejects ("unknown setting 'cd'"); that may be a piece of a secret.
            var message = UriRedaction.Scrub(ex.Message, UriRedaction.SecretsIn(copy));
            if (message == ex.Message)
            {
                throw;
            }

            throw ex is BusConfigurationException
                ? new BusConfigurationException(message, ex.Backend, ex.Topic)
                : new BusException(message, ex.Reason, ex.Backend, ex.Topic, ex.IsTransient);
        }
        catch (Exception ex)
        {
            var secrets = UriRedaction.SecretsIn(copy);
            throw new BusConfigurationException($"{factory.Backend}: cannot use '{context.RedactedUrl}': {UriRedaction.Scrub(ex.Message, secrets)}", factory.Backend, Scrub(ex, secrets, factory.Backend));
        }

        if (context.UnusedSettings() is { Count: > 0 } unused)
        {
            // Names only, and not the URI either: a value may be a secret under a misspelt name that redaction misses.
            _ = DisposeQuietlyAsync(transport);
            var named = unused.Where(context.MayName).ToList();
            var hidden = unused.Count - named.Count;
            var names = named.Count == 0
                ? ""
                : $"{(named.Count == 1 ? "setting" : "settings")} {string.Join(", ", named.Select(name => $"'{name}'"))} (from the URI's query or {BusOptions.SectionName}:Settings) {(named.Count == 1 ? "is" : "are")} not used by this backend with this URI; check the spelling. ";
            var unnamed = hidden == 0
                ? ""
                : $"{hidden} {(hidden == 1 ? "setting that follows" : "settings that follow")} a secret in the URI's query {(hidden == 1 ? "is" : "are")} not used and not named here, as {(hidden == 1 ? "it" : "they")} may be part of the secret's value: percent-encode '&' in a value as %26. ";
            var asked = context.AskedSettings();
            throw new BusConfigurationException(
                $"{factory.Backend}: {names}{unnamed}It reads: {(asked.Count == 0 ? "no settings" : string.Join(", ", asked))}.",
                factory.Backend);
        }

        return new MessageBus(transport, copy, loggerFactory, context.RedactedUrl);

        static async Task DisposeQuietlyAsync(MessageTransport transport)
        {
            try
            {
                await transport.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception)
            {
                // Never connected; nothing to report beyond the configuration error.
            }
        }
    }

    /// <summary>Builds a bus for <paramref name="url"/> with default options.</summary>
    /// <param name="url">The connection URI, e.g. <c>memory://</c> or <c>rabbitmq://guest:guest@localhost</c>.</param>
    /// <param name="loggerFactory">Logging; none by default.</param>
    public static MessageBus Create(string url, ILoggerFactory? loggerFactory = null) => Create(new BusOptions { Url = url }, loggerFactory);

    /// <inheritdoc />
    public ValueTask ConnectAsync(CancellationToken cancellationToken = default)
        => _connected ? default : ConnectSlowAsync(cancellationToken);

    /// <inheritdoc />
    public string GetDeadLetterTopic(string topic)
    {
        ValidateTopic(topic);
        return Transport.GetDeadLetterTopic(topic);
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Subscriptions first (they wait for their handlers, which may still publish), then the publishes under way,
        // then consumers, then the connection.
        foreach (var live in _live.Keys.OfType<ISubscription>().ToArray())
        {
            await DisposeQuietlyAsync(live).ConfigureAwait(false);
        }

        Interlocked.Exchange(ref _publishingClosed, 1); // a full fence before reading the count: see BeginPublish
        await WaitForPublishesAsync().ConfigureAwait(false);

        foreach (var live in _live.Keys.ToArray())
        {
            await DisposeQuietlyAsync(live).ConfigureAwait(false);
        }

        // The reply listener is closed: a request still waiting would otherwise wait out its whole timeout.
        foreach (var waiting in _pendingReplies.Values)
        {
            waiting.TrySetException(new ObjectDisposedException(nameof(MessageBus), "The bus was disposed before the reply arrived."));
        }

        await DeleteReplyTopicAsync().ConfigureAwait(false);
        await DisposeQuietlyAsync(Transport).ConfigureAwait(false);
        _connectLock.Dispose();
    }

    internal void Forget(IAsyncDisposable live) => _live.TryRemove(live, out _);

    /// <summary>
    /// Waits until the publishes under way have completed or failed, at most <see cref="BusOptions.OperationTimeout"/>:
    /// an application that disposes the bus as it shuts down gets its messages confirmed rather than failed by the
    /// closing connection (RabbitMQ and SQS failed every publish still on its way). Polled: a signal would cost every
    /// publish a check, and disposing happens once.
    /// </summary>
    private async Task WaitForPublishesAsync()
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (Volatile.Read(ref _publishing) > 0)
        {
            if (waited.Elapsed >= _options.OperationTimeout)
            {
                Log.PublishesOutlivedDispose(_logger, Backend, Volatile.Read(ref _publishing), _options.OperationTimeout.TotalSeconds);
                return;
            }

            await Task.Delay(5).ConfigureAwait(false);
        }
    }

    private async ValueTask DisposeQuietlyAsync(IAsyncDisposable disposable)
    {
        try
        {
            await disposable.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _logger.LogWarning(ex, "Disposing {Component} of the {Backend} bus failed", disposable.GetType().Name, Backend);
        }
    }

    private async ValueTask ConnectSlowAsync(CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connected)
            {
                return;
            }

            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(_options.ConnectTimeout);
            try
            {
                await Transport.ConnectAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
            {
                Log.ConnectFailed(_logger, Backend, _redactedUrl, Scrub(ex));
                var timedOut = timeout.IsCancellationRequested;
                var why = timedOut ? $"no answer within {_options.ConnectTimeout.TotalSeconds:0.#} s" : UriRedaction.Scrub(ex.Message, Secrets);
                // A transport that already said so is not repeated ("redis: cannot connect to …: redis: cannot connect to …"),
                // nor the backend's name it starts with.
                var prefix = $"{Backend}: cannot connect to {_redactedUrl}: ";
                var message = why.StartsWith(prefix, StringComparison.Ordinal) ? why
                    : prefix + (why.StartsWith(Backend + ": ", StringComparison.Ordinal) ? why[(Backend.Length + 2)..] : why);
                // The transport's own reason stands (refused credentials are Unauthorized and not worth retrying).
                var (reason, transient) = !timedOut && ex is BusException known ? (known.Reason, known.IsTransient) : (BusFailureReason.Connection, true);
                throw new BusException(message, reason, Backend, null, transient, Scrub(ex));
            }

            _connected = true;
            Log.Connected(_logger, Backend, _redactedUrl);
        }
        finally
        {
            _connectLock.Release();
        }
    }

    /// <summary>
    /// Client libraries sometimes echo the connection string in their messages; keep the type and the shape of the
    /// error but never a password.
    /// </summary>
    private Exception Scrub(Exception ex) => Scrub(ex, Secrets, Backend);

    /// <summary>The secrets of this bus's options, worked out on the first error.</summary>
    private IReadOnlyList<(string Text, bool Piece)> Secrets => _secrets ??= UriRedaction.SecretsIn(_options);

    /// <summary>
    /// The exception as it is, or, when its message or an inner exception's holds one of <paramref name="secrets"/>, a
    /// stand-in with the outer message scrubbed (the inner chain, which cannot be rewritten, is left out).
    /// </summary>
    private static Exception Scrub(Exception ex, IReadOnlyList<(string Text, bool Piece)> secrets, string backend)
    {
        for (var inner = ex; inner is not null; inner = inner.InnerException)
        {
            if (UriRedaction.Scrub(inner.Message, secrets) != inner.Message)
            {
                return ex is BusException bus
                    ? new BusException(UriRedaction.Scrub(ex.Message, secrets), bus.Reason, bus.Backend, bus.Topic, bus.IsTransient)
                    : new BusException($"{ex.GetType().FullName}: {UriRedaction.Scrub(ex.Message, secrets)}", BusFailureReason.Connection, backend);
            }
        }

        return ex;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);

    /// <summary>Publishing goes on while disposing closes subscriptions (their handlers may publish), and stops after.</summary>
    private void ThrowIfPublishingClosed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _publishingClosed) != 0, this);

    private BusException Wrap(Exception ex, string operation, string? topic)
        => ex is BusException known ? (BusException)Scrub(known) : new BusException(
            $"{Backend}: {operation}{(topic is null ? "" : $" on topic '{topic}'")} failed: {UriRedaction.Scrub(ex.Message, Secrets)}",
            ex is TimeoutException ? BusFailureReason.Timeout : BusFailureReason.BrokerError,
            Backend, topic, isTransient: true, Scrub(ex));
}
