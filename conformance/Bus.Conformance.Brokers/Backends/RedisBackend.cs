using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>Redis: <c>redis:7</c> where images can be pulled, else <c>local/redis:bookworm</c> (Debian's 7.0.15).</summary>
internal sealed class RedisBackend : BrokerBackend
{
    public override BrokerKind Kind => BrokerKind.Redis;

    public override string DisplayName => "Redis";

    public override string? OfficialImage => "redis:7";

    public override string? LocalImage => "local/redis:bookworm";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(60);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } = new Dictionary<string, int> { ["redis"] = 6379 };

    protected internal override ContainerSpec DescribeContainer(string image, IReadOnlyDictionary<string, int> hostPorts) =>
        image == LocalImage
            ? base.DescribeContainer(image, hostPorts)
            : new ContainerSpec
            {
                Image = image,
                PortBindings = MapPorts(hostPorts),
                // Clients come through Docker's port mapping, not loopback: protected mode would refuse them.
                Command = ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no"],
            };

    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"redis://{host}:{hostPorts["redis"]}"));

    protected internal override Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken) =>
        RespProbe.ProbeAsync(connectionUri, cancellationToken);
}
