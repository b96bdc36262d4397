namespace Bus;

/// <summary>
/// How to build a bus: which backend (by <see cref="Url"/>) and the shared settings. Binds from an
/// appsettings section such as <c>"Bus": { "Url": "rabbitmq://localhost" }</c>.
/// </summary>
public sealed class BusOptions
{
    /// <summary>The configuration section name used by default: <c>Bus</c>.</summary>
    public const string SectionName = "Bus";

    /// <summary>
    /// The connection URI; its scheme picks the backend: <c>memory://</c> (the default), <c>rabbitmq://</c> or
    /// <c>amqp://</c>/<c>amqps://</c>, <c>kafka://</c>, <c>sqs://</c>, <c>redis://</c>/<c>rediss://</c>,
    /// <c>nats://</c>, <c>pulsar://</c>, <c>mqtt://</c>/<c>mqtts://</c>.
    /// </summary>
    public string Url { get; set; } = "memory://";

    /// <summary>How long connecting may take before failing with a connection error. Default 10 seconds.</summary>
    public TimeSpan ConnectTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>How long one publish or provisioning call may take. Default 30 seconds.</summary>
    public TimeSpan OperationTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Backend-specific settings, by name (the same names as the URI's query parameters, which win).
    /// Documented by each backend.
    /// </summary>
    public IDictionary<string, string> Settings { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    /// <summary>A copy, so later changes by the caller have no effect on a built bus.</summary>
    public BusOptions Clone()
    {
        var copy = new BusOptions { Url = Url, ConnectTimeout = ConnectTimeout, OperationTimeout = OperationTimeout };
        foreach (var (name, value) in Settings)
        {
            copy.Settings[name] = value;
        }

        return copy;
    }
}
