using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>
/// Pulsar standalone, official image only (<c>apachepulsar/pulsar:4.0.4</c>): no local image can be built on the
/// project's machines. <see cref="BrokerFixture.ConnectionUri"/> is the web service (HTTP, and the WebSocket API the
/// Bus adapter uses); endpoint <c>binary</c> is the <c>pulsar://</c> service URL.
/// </summary>
/// <remarks>
/// The broker listens on the same port numbers inside the container as on the host, and advertises 127.0.0.1, so that
/// topic lookups made through either protocol return addresses the host can reach.
/// </remarks>
internal sealed class PulsarBackend : BrokerBackend
{
    public override BrokerKind Kind => BrokerKind.Pulsar;

    public override string DisplayName => "Pulsar";

    public override string? OfficialImage => "apachepulsar/pulsar:4.0.4";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(180);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } =
        new Dictionary<string, int> { ["http"] = 8080, ["binary"] = 6650 };

    protected internal override ContainerSpec DescribeContainer(string image, IReadOnlyDictionary<string, int> hostPorts) => new()
    {
        Image = image,
        PortBindings = hostPorts.Values.ToDictionary(p => p, p => p),
        Command = ["bash", "-c", "bin/apply-config-from-env.py conf/standalone.conf && exec bin/pulsar standalone --no-functions-worker --no-stream-storage"],
        Environment = new Dictionary<string, string>
        {
            ["advertisedAddress"] = "127.0.0.1",
            ["webServicePort"] = hostPorts["http"].ToString(CultureInfo.InvariantCulture),
            ["brokerServicePort"] = hostPorts["binary"].ToString(CultureInfo.InvariantCulture),
            ["webSocketServiceEnabled"] = "true",
            ["PULSAR_MEM"] = "-Xms256m -Xmx512m -XX:MaxDirectMemorySize=256m",
        },
    };

    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"http://{host}:{hostPorts["http"]}"));

    protected internal override IReadOnlyDictionary<string, Uri> CreateEndpoints(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new Dictionary<string, Uri> { ["binary"] = new(string.Create(CultureInfo.InvariantCulture, $"pulsar://{host}:{hostPorts["binary"]}")) };

    protected internal override async Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken)
    {
        // The health check round-trips a message through a topic of its own, so the broker is really serving.
        await HttpProbe.GetAsync(new Uri(connectionUri, "/admin/v2/brokers/health"), cancellationToken).ConfigureAwait(false);
        var version = await HttpProbe.GetAsync(new Uri(connectionUri, "/admin/v2/brokers/version"), cancellationToken).ConfigureAwait(false);
        return $"Pulsar {version.Trim().Trim('"')}";
    }
}
