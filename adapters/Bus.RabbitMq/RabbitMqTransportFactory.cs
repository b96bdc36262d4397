using Bus.RabbitMq.Internal;
using Bus.Transport;

namespace Bus.RabbitMq;

/// <summary>
/// The RabbitMQ backend (<c>rabbitmq://</c>, <c>amqp://</c>, <c>amqps://</c>; RabbitMQ 3.10 or later). A topic is a
/// durable fanout exchange of the same name; a group is a durable queue <c>&lt;topic&gt;:&lt;group&gt;</c> bound to it
/// (':' cannot occur in a topic name, so the two never collide). Group queues are quorum queues by default, so the
/// broker counts deliveries (<c>x-delivery-count</c>) and dead-letters natively to the topic's dead-letter exchange.
/// </summary>
/// <remarks>
/// <para>
/// URI: <c>amqp://user:password@host:port/vhost?setting=value</c>. <c>amqps://</c> (or <c>rabbitmq://…?tls=true</c>)
/// uses TLS, port 5671 by default. A missing path, <c>/</c> and <c>/%2f</c> all mean the vhost <c>/</c>; user, password
/// and vhost are percent-decoded.
/// </para>
/// <para>
/// Settings (<see cref="BusOptions.Settings"/> or URI query): <c>queue-type</c> (<c>quorum</c>, the default, or
/// <c>classic</c>; a topic may choose with <c>TopicOptions.Properties["queue-type"]</c>); <c>single-active-consumer</c>
/// (<c>true</c>: every group queue keeps per-key order across consumers by letting one consumer at a time receive;
/// a topic may ask for it with <c>TopicOptions.Ordered = true</c>); <c>delivery-limit</c> (the quorum queue's
/// <c>x-delivery-limit</c>; default the subscription's MaxDeliveries + 2); <c>max-message-size</c> (bytes, default
/// 16777216, at most 134217728, RabbitMQ 3.10's default limit); <c>tls</c> (<c>true</c> for TLS with
/// <c>rabbitmq://</c>); <c>tls-verify</c> (<c>false</c> accepts any server certificate, for development only);
/// <c>heartbeat</c> (seconds, default 30).
/// </para>
/// <para>Queue arguments are fixed when a group's queue is first declared: a queue that exists is used as it is.</para>
/// </remarks>
public sealed class RabbitMqTransportFactory : IBusTransportFactory
{
    /// <summary>The default for <c>max-message-size</c>: 16 MiB.</summary>
    public const int DefaultMaxMessageSize = 16 * 1024 * 1024;

    /// <summary>What the RabbitMQ backend provides with its defaults (quorum queues).</summary>
    public static readonly BackendCapabilities DeclaredCapabilities = new()
    {
        Backend = RabbitMqEndpoint.BackendName,
        Features = BusFeatures.PerKeyOrdering | BusFeatures.OrderedRetry | BusFeatures.NativeDeadLetter | BusFeatures.DelayedDelivery
            | BusFeatures.RequestReply | BusFeatures.FanOutToGroups | BusFeatures.Persistence | BusFeatures.ExactDeliveryCount
            | BusFeatures.RedeliveryOfAbandoned | BusFeatures.TopicConflictDetection | BusFeatures.CompetingConsumers
            | BusFeatures.DelayedNack | BusFeatures.RemoteBroker | BusFeatures.SharedDeliveryCount,
        MaxMessageSize = DefaultMaxMessageSize,
        MaxTopicNameLength = RabbitMqEndpoint.MaxTopicNameLength,
        Remarks = new Dictionary<BusFeatures, string>
        {
            [BusFeatures.OrderedAcrossConsumers] = "not by default: competing consumers of a RabbitMQ queue receive round robin, so one key's messages are handled in parallel by different consumers. "
                + "TopicOptions.Ordered = true (or the setting single-active-consumer=true) declares the group queues with x-single-active-consumer, which keeps per-key order because only one consumer of the group receives at a time; the others stand by",
            [BusFeatures.OrderedRetry] = "per consumer, by the adapter: with per-key ordering a receiver hands out one delivery per key at a time and holds the key's later deliveries (unacknowledged, within the prefetch); "
                + "after a nack it holds them until the nacked message returns (RabbitMQ redelivers a requeued message before the rest of the queue). If that redelivery goes to another consumer of the group, the key is released after 5 s",
            [BusFeatures.Replay] = "quorum and classic queues delete acknowledged messages and a new group's queue starts empty; RabbitMQ streams keep a log, but over AMQP 0-9-1 a stream has no acknowledgement or server-side group offset, so groups cannot be built on it with this client",
            [BusFeatures.ReplayFromPosition] = "no replay (see Replay)",
            [BusFeatures.ReplayFromTime] = "no replay (see Replay)",
            [BusFeatures.DelayedDelivery] = "emulated: the delayed-message plugin is not part of RabbitMQ; a delayed message waits in a classic queue <topic>:bus-delay-<ms> with that message TTL, whose dead-letter exchange is the topic's exchange (dead-lettering on expiry is at-most-once if the broker crashes at that moment)",
            [BusFeatures.DelayedNack] = "emulated: the client holds the delivery (still unacknowledged, occupying a prefetch slot) for the delay and then nacks it with requeue; if the consumer closes meanwhile, the broker requeues it at once",
            [BusFeatures.RequestReply] = "emulated by core with a private reply topic per bus",
            [BusFeatures.NativeDeadLetter] = "quorum group queues count deliveries (x-delivery-count) and carry x-delivery-limit (MaxDeliveries + 2) with an at-least-once dead-letter exchange pointing at the dead-letter topic: a safety net for consumers that crash; core dead-letters first, with reason headers. Not declared with queue-type=classic",
            [BusFeatures.ExactDeliveryCount] = "exact with quorum queues (x-delivery-count); not declared with queue-type=classic, where only first (1) or redelivered (2) is known",
            [BusFeatures.SharedDeliveryCount] = "quorum queues count deliveries in the broker (x-delivery-count), a message released by a consumer that closed included; not declared with queue-type=classic",
            [BusFeatures.AckTimeoutRedelivery] = "RabbitMQ has no lease per delivery: an unacknowledged message stays with its consumer while the channel is open. The broker's consumer_timeout (rabbitmq.conf, 30 minutes by default, checked about once a minute; per queue only from RabbitMQ 3.12) closes the channel of a consumer that holds a delivery longer, which returns all of that channel's deliveries to the queue; SubscriptionOptions.AckTimeout is not used",
            [BusFeatures.TopicConflictDetection] = "RabbitMQ compares queue arguments on redeclaration; options set on a topic are recorded as arguments of empty marker queues <topic>:bus-topic-<option>, so a conflicting redeclaration fails with 406 PRECONDITION_FAILED",
        },
    };

    /// <inheritdoc />
    public string Backend => RabbitMqEndpoint.BackendName;

    /// <inheritdoc />
    public IReadOnlyList<string> Schemes { get; } = ["rabbitmq", "amqp", "amqps"];

    /// <inheritdoc />
    public BackendCapabilities Capabilities => DeclaredCapabilities;

    /// <inheritdoc />
    public MessageTransport Create(TransportContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var endpoint = RabbitMqEndpoint.Parse(context);
        var capabilities = DeclaredCapabilities.WithMaxMessageSize(endpoint.MaxMessageSize);
        if (endpoint.QueueType == RabbitMqQueueType.Classic)
        {
            capabilities = WithClassicQueues(capabilities);
        }

        return new RabbitMqTransport(endpoint, capabilities, context);
    }

    /// <summary>
    /// What a bus whose group queues are classic (queue-type=classic) provides: a classic queue keeps no delivery count
    /// (it only flags a redelivery; the adapter counts redeliveries within the bus) and has no delivery limit, so the
    /// features built on a count kept by the broker are not declared. A
    /// topic whose own TopicOptions choose another queue type is not reflected here.
    /// </summary>
    internal static BackendCapabilities WithClassicQueues(BackendCapabilities capabilities)
    {
        const string Classic = "queue-type=classic: ";
        var remarks = new Dictionary<BusFeatures, string>(capabilities.Remarks)
        {
            [BusFeatures.ExactDeliveryCount] = Classic + "a classic queue only flags a redelivery; the adapter counts redeliveries by message id within one bus (exact for nacks and for redelivery to another consumer of the same bus), but a message redelivered to a consumer in another process counts 2 whatever came before",
            [BusFeatures.SharedDeliveryCount] = Classic + "the broker keeps no count, so a message that crashes every consumer taking it is delivered again without end unless MaxDeliveries is 1",
            [BusFeatures.NativeDeadLetter] = Classic + "no delivery limit; core dead-letters (publish to the dead-letter topic, then ack), on the adapter's count within the bus",
        };
        return capabilities with
        {
            Features = capabilities.Features & ~(BusFeatures.ExactDeliveryCount | BusFeatures.SharedDeliveryCount | BusFeatures.NativeDeadLetter),
            Remarks = remarks,
        };
    }
}
