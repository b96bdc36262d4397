using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>
/// NATS with JetStream: <c>nats:2.10</c> where images can be pulled, else <c>local/nats:bookworm</c> (Debian's 2.9.10).
/// Endpoint <c>monitoring</c>: the HTTP monitoring port (<c>/healthz</c>, <c>/varz</c>, <c>/jsz</c>).
/// </summary>
internal sealed class NatsBackend : BrokerBackend
{
    public override BrokerKind Kind => BrokerKind.Nats;

    public override string DisplayName => "NATS";

    public override string? OfficialImage => "nats:2.10";

    public override string? LocalImage => "local/nats:bookworm";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(60);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } =
        new Dictionary<string, int> { ["client"] = 4222, ["monitoring"] = 8222 };

    protected internal override ContainerSpec DescribeContainer(string image, IReadOnlyDictionary<string, int> hostPorts) =>
        image == LocalImage
            ? base.DescribeContainer(image, hostPorts)
            : new ContainerSpec
            {
                Image = image,
                PortBindings = MapPorts(hostPorts),
                // Arguments to the official image's entry point, nats-server; the same as the local image's command.
                Command = ["-js", "-sd", "/data", "-p", "4222", "-m", "8222"],
            };

    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"nats://{host}:{hostPorts["client"]}"));

    protected internal override IReadOnlyDictionary<string, Uri> CreateEndpoints(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new Dictionary<string, Uri> { ["monitoring"] = new(string.Create(CultureInfo.InvariantCulture, $"http://{host}:{hostPorts["monitoring"]}")) };

    protected internal override Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken) =>
        NatsProbe.ProbeAsync(connectionUri, endpoints.GetValueOrDefault("monitoring"), cancellationToken);
}
