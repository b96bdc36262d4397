using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>
/// MQTT: <c>eclipse-mosquitto:2</c> where images can be pulled, else <c>local/mosquitto:bookworm</c> (Debian's 2.0.11);
/// both read docker/mosquitto/mosquitto.conf (embedded here, copied into the official image).
/// </summary>
internal sealed class MqttBackend : BrokerBackend
{
    private static readonly Lazy<byte[]> Configuration = new(() =>
    {
        using var stream = typeof(MqttBackend).Assembly.GetManifestResourceStream("mosquitto.conf")
            ?? throw new InvalidOperationException("The embedded mosquitto.conf is missing.");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    });

    public override BrokerKind Kind => BrokerKind.Mqtt;

    public override string DisplayName => "Mosquitto (MQTT)";

    public override string? OfficialImage => "eclipse-mosquitto:2";

    public override string? LocalImage => "local/mosquitto:bookworm";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(60);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } = new Dictionary<string, int> { ["mqtt"] = 1883 };

    protected internal override ContainerSpec DescribeContainer(string image, IReadOnlyDictionary<string, int> hostPorts) =>
        image == LocalImage
            ? base.DescribeContainer(image, hostPorts)
            : new ContainerSpec
            {
                Image = image,
                PortBindings = MapPorts(hostPorts),
                // Without it Mosquitto 2 listens on the container's loopback only and refuses anonymous clients.
                Files = new Dictionary<string, byte[]> { ["/mosquitto/config/mosquitto.conf"] = Configuration.Value },
            };

    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"mqtt://{host}:{hostPorts["mqtt"]}"));

    protected internal override Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken) =>
        MqttProbe.ProbeAsync(connectionUri, cancellationToken);
}
