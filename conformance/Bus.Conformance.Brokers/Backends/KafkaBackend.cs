using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>
/// Kafka in KRaft mode, official image (<c>apache/kafka:3.9.0</c>) where images can be pulled.
/// <see cref="BrokerFixture.ConnectionUri"/> is <c>kafka://127.0.0.1:PORT</c>: host and port are the bootstrap server.
/// </summary>
/// <remarks>
/// No local image: on the project's machines Kafka is librdkafka's mock cluster, which is not a plain container
/// (it needs host networking and publishes its addresses in its log). That route belongs in an override of
/// <see cref="BrokerBackend.CreateLocalFixtureAsync"/> in this class.
/// </remarks>
internal sealed class KafkaBackend : BrokerBackend
{
    public override BrokerKind Kind => BrokerKind.Kafka;

    public override string DisplayName => "Kafka";

    public override string? OfficialImage => "apache/kafka:3.9.0";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(120);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } = new Dictionary<string, int> { ["kafka"] = 9092 };

    protected internal override ContainerSpec DescribeContainer(string image, IReadOnlyDictionary<string, int> hostPorts) => new()
    {
        Image = image,
        PortBindings = MapPorts(hostPorts),
        Environment = new Dictionary<string, string>
        {
            ["KAFKA_NODE_ID"] = "1",
            ["KAFKA_PROCESS_ROLES"] = "broker,controller",
            ["KAFKA_LISTENERS"] = "PLAINTEXT://:9092,CONTROLLER://:9093",
            // Clients are told the host's address and port, which the fixture chose before the container existed.
            ["KAFKA_ADVERTISED_LISTENERS"] = string.Create(CultureInfo.InvariantCulture, $"PLAINTEXT://127.0.0.1:{hostPorts["kafka"]}"),
            ["KAFKA_CONTROLLER_LISTENER_NAMES"] = "CONTROLLER",
            ["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"] = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@localhost:9093",
            ["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] = "1",
            ["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] = "1",
            ["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] = "1",
            ["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] = "0",
            ["KAFKA_NUM_PARTITIONS"] = "4",
        },
    };

    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"kafka://{host}:{hostPorts["kafka"]}"));

    protected internal override Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken) =>
        KafkaProbe.ProbeAsync(connectionUri, cancellationToken);
}
