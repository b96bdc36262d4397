using Microsoft.Extensions.Logging;

namespace Bus.Conformance;

/// <summary>A backend to run the catalogue against: how to build a bus for it and what it really is.</summary>
public sealed class ConformanceBackend
{
    /// <summary>The backend's name, e.g. <c>rabbitmq</c>.</summary>
    public required string Name { get; init; }

    /// <summary>
    /// What the cases ran against, truthfully: e.g. <c>embedded</c>, <c>container local/rabbitmq:bookworm (RabbitMQ 3.10.8)</c>,
    /// <c>emulator: librdkafka mock cluster</c>.
    /// </summary>
    public required string Target { get; init; }

    /// <summary>The connection URI.</summary>
    public required string Url { get; init; }

    /// <summary>Extra backend settings for every bus (optional).</summary>
    public IReadOnlyDictionary<string, string> Settings { get; init; } = new Dictionary<string, string>();

    /// <summary>
    /// A URI of this backend's scheme that points at a closed port and carries the password <c>s3cr3t-Pa55word-zq</c>,
    /// for <c>errors/unreachable_broker</c>. <see langword="null"/>: the case derives one from <see cref="Url"/> (its
    /// scheme and query, 127.0.0.1 and a closed port).
    /// </summary>
    public string? UnreachableUrl { get; init; }

    /// <summary>Multiplies every wait and case timeout (slow brokers, emulators). Default 1.</summary>
    public double TimeoutScale { get; init; } = 1.0;

    /// <summary>
    /// Features the backend declares that this target cannot show, each with the reason (an emulator's gap, such as
    /// the librdkafka mock cluster not answering OffsetsForTimes). A case that needs one reports unsupported, naming
    /// the target and the reason: it is not run, and not passed either. Empty by default.
    /// </summary>
    public IReadOnlyDictionary<BusFeatures, string> NotVerifiable { get; init; } = new Dictionary<BusFeatures, string>();

    /// <summary>Where buses log; none by default.</summary>
    public ILoggerFactory? LoggerFactory { get; init; }

    // Cases run in parallel: the first name made wins, so that every bus of this backend gets the same one.
    private string SharedUrl => _sharedUrl ?? Interlocked.CompareExchange(ref _sharedUrl, MakeSharedUrl(), null) ?? _sharedUrl!;

    private string? _sharedUrl;

    private string MakeSharedUrl() => Uri.TryCreate(Url, UriKind.Absolute, out var uri) && uri.Scheme == "memory" && uri.Host.Length == 0
        ? $"memory://conformance-{Guid.NewGuid():N}{uri.Query}"
        : Url;

    /// <summary>
    /// What a bus of this backend's URL and settings declares: the same as its cases read (<c>Bus.Capabilities</c>).
    /// Settings can change it (<c>sqs://…?fifo=true</c> is a FIFO backend), which the factory's static declaration
    /// does not know: a case was once reported unsupported by the one while its body read the other.
    /// </summary>
    public BackendCapabilities Capabilities => _capabilities ??= Declared();

    private BackendCapabilities? _capabilities;

    private BackendCapabilities Declared()
    {
        if (BusTransports.FindForUrl(Url) is null)
        {
            throw new BusConfigurationException($"No backend is available for '{Url.Split("://")[0]}://'.");
        }

        // Creating a bus does not connect; nothing is sent.
        var bus = MessageBus.Create(CreateOptions(), LoggerFactory);
        var capabilities = bus.Capabilities;
        _ = bus.DisposeAsync().AsTask();
        return capabilities;
    }

    /// <summary>Options for a new bus on this backend.</summary>
    /// <remarks>
    /// <c>memory://</c> without a name gives every bus a broker of its own; the cases' buses are given one named broker
    /// instead (unique to this instance), so that they share it as they would share any other backend's broker.
    /// </remarks>
    public BusOptions CreateOptions()
    {
        var options = new BusOptions { Url = SharedUrl, ConnectTimeout = TimeSpan.FromSeconds(10 * TimeoutScale) };
        foreach (var (name, value) in Settings)
        {
            options.Settings[name] = value;
        }

        return options;
    }
}
