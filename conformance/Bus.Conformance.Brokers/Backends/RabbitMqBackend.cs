using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>RabbitMQ: <c>rabbitmq:3.13</c> where images can be pulled, else <c>local/rabbitmq:bookworm</c> (Debian's 3.10.8).</summary>
internal sealed class RabbitMqBackend : BrokerBackend
{
    public override BrokerKind Kind => BrokerKind.RabbitMq;

    public override string DisplayName => "RabbitMQ";

    public override string? OfficialImage => "rabbitmq:3.13";

    public override string? LocalImage => "local/rabbitmq:bookworm";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(120);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } = new Dictionary<string, int> { ["amqp"] = 5672 };

    // Both images let guest log in from outside the container (the local one through loopback_users = none).
    // The vhost is spelled out: System.Uri adds a trailing slash, which some AMQP clients read as the empty vhost.
    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"amqp://guest:guest@{host}:{hostPorts["amqp"]}/%2f"));

    protected internal override Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken) =>
        AmqpProbe.ProbeAsync(connectionUri, cancellationToken);
}
