using Bus.Kafka;
using Bus.Kafka.Internal;
using Bus.Transport;

[assembly: BusTransport(typeof(KafkaTransportFactory))]

namespace Bus.Kafka;

/// <summary>
/// The Kafka backend, on Confluent.Kafka (librdkafka). URIs: <c>kafka://host:9092[,host2:9092]</c> (plaintext) and
/// <c>kafkas://host:9093</c> (TLS); user and password in the URI become SASL PLAIN credentials
/// (<c>sasl.mechanism</c> may choose another). Every other setting, from <see cref="BusOptions.Settings"/> or the
/// URI's query, is a librdkafka property passed through as written (e.g. <c>?security.protocol=SASL_SSL</c>), for
/// all clients or, prefixed <c>producer.</c>, <c>consumer.</c> or <c>admin.</c>, for one kind. Adapter settings:
/// <c>max-message-size</c> (bytes, default 1000000, Kafka's default <c>message.max.bytes</c>) and
/// <c>create-topics-timeout-ms</c> (default 5000).
/// </summary>
/// <remarks>
/// Publishing uses an idempotent producer with <c>acks=all</c>, the murmur2 partitioner (keys land where Java clients
/// put them), <c>linger.ms=1</c> and delivery reports that carry the outcome only; a publish completes on its delivery
/// report. Bus fields Kafka lacks travel as headers <c>bus-message-id</c>, <c>bus-correlation-id</c>,
/// <c>bus-content-type</c> and <c>bus-reply-to</c>; application headers are UTF-8. Positions are <c>partition:offset</c>. Consumers commit only the contiguous
/// acknowledged prefix of each partition. Topic names may be at most 245 characters, so that the dead-letter topic
/// <c>&lt;topic&gt;.dlq</c> fits Kafka's 249.
/// </remarks>
public sealed class KafkaTransportFactory : IBusTransportFactory
{
    /// <summary>What the Kafka backend provides.</summary>
    public static readonly BackendCapabilities DeclaredCapabilities = new()
    {
        Backend = "kafka",
        Features = BusFeatures.PerKeyOrdering | BusFeatures.OrderedAcrossConsumers | BusFeatures.OrderedRetry
            | BusFeatures.Replay | BusFeatures.ReplayFromPosition | BusFeatures.ReplayFromTime
            | BusFeatures.RequestReply | BusFeatures.FanOutToGroups | BusFeatures.Persistence
            | BusFeatures.RedeliveryOfAbandoned | BusFeatures.CompetingConsumers | BusFeatures.DelayedNack
            | BusFeatures.RemoteBroker,
        MaxMessageSize = KafkaEndpoint.DefaultMaxMessageSize,
        MaxTopicNameLength = 245,
        Remarks = new Dictionary<BusFeatures, string>
        {
            [BusFeatures.NativeDeadLetter] = "Kafka has no dead-letter topics; core publishes the copy to <topic>.dlq (acks=all), then commits past the original",
            [BusFeatures.DelayedDelivery] = "Kafka has no delayed delivery: a record is readable as soon as it is written",
            [BusFeatures.SharedDeliveryCount] = "Kafka stores no delivery count; the adapter's count lives in the bus instance, so a message redelivered to another process after a crash starts again at 1, and a message that crashes every process taking it is never dead-lettered (one that makes its handler throw is counted)",
            [BusFeatures.ExactDeliveryCount] = "Kafka stores no delivery count; the adapter counts deliveries per group, partition and offset within one bus instance (exact for nacks and for redelivery to another consumer of the same bus), but a message redelivered to a consumer in another process after a crash starts again at 1",
            [BusFeatures.TopicConflictDetection] = "implemented (an existing topic whose partition count differs from the requested one raises TopicConflict) only where the cluster answers CreateTopics; not declared because it cannot be verified here: the librdkafka mock cluster used on these machines does not answer CreateTopics and auto-creates every topic with 4 partitions, so a conflict there is only logged",
            [BusFeatures.ReplayFromTime] = "via OffsetsForTimes; not verifiable on these machines, because the librdkafka mock cluster does not answer OffsetsForTimes (Kafka does)",
            [BusFeatures.RequestReply] = "emulated by core with a private reply topic per bus",
            [BusFeatures.OrderedAcrossConsumers] = "a key maps to one partition (murmur2) and a partition to one consumer of the group at a time",
            [BusFeatures.OrderedRetry] = "the adapter holds a nacked message and redelivers it before any later message of its key; its partition's commit stays behind it",
            [BusFeatures.DelayedNack] = "emulated in the consumer: the nacked message is held in memory for the delay while later messages of its key wait; a crash meanwhile redelivers it from the last commit",
            [BusFeatures.RedeliveryOfAbandoned] = "unacknowledged messages are redelivered to the partition's next owner after the consumer closes or its session times out (session.timeout.ms), and when the group rebalances while they are still unsettled after SubscriptionOptions.AckTimeout (a revocation waits that long for them, at most half the OperationTimeout)",
            [BusFeatures.AckTimeoutRedelivery] = "a Kafka group keeps a committed offset per partition, not a lease per message: a message left unacknowledged by a consumer that is alive and polling stays with it until its partition changes owner (a member joins or leaves and the group rebalances, the consumer closes, or its session times out), and then goes to the new owner. SubscriptionOptions.AckTimeout (at most half the OperationTimeout) bounds only how long a revocation waits for the messages handed out from its partitions to be settled (so that their acknowledgements are committed first); what is still unsettled then goes to the new owner even if the old one is still handling it",
        },
    };

    /// <inheritdoc />
    public string Backend => "kafka";

    /// <inheritdoc />
    public IReadOnlyList<string> Schemes { get; } = ["kafka", "kafkas"];

    /// <inheritdoc />
    public BackendCapabilities Capabilities => DeclaredCapabilities;

    /// <inheritdoc />
    public MessageTransport Create(TransportContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var endpoint = KafkaEndpoint.Parse(context);
        var capabilities = DeclaredCapabilities.WithMaxMessageSize(endpoint.MaxMessageSize);
        return new KafkaTransport(context, endpoint, capabilities);
    }
}
