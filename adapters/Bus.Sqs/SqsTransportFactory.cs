using Bus.Sqs;
using Bus.Sqs.Internal;
using Bus.Transport;

[assembly: BusTransport(typeof(SqsTransportFactory))]

namespace Bus.Sqs;

/// <summary>
/// The Amazon SQS backend (<c>sqs://</c>).
/// <list type="bullet">
/// <item><c>sqs://us-east-1</c>: AWS in that region, credentials from the standard AWS chain (environment, profile,
/// web identity, container or instance role).</item>
/// <item><c>sqs://ACCESS:SECRET@127.0.0.1:4566?region=us-east-1</c>: an endpoint override (LocalStack, fauxqs,
/// ElasticMQ) over http (<c>tls=true</c> for https), with the credentials in the URI (URL-encode them).</item>
/// <item><c>sqs://eu-west-1?endpoint=https://vpce-….sqs.eu-west-1.vpce.amazonaws.com</c>: an explicit endpoint.</item>
/// </list>
/// Settings (URI query or <see cref="BusOptions.Settings"/>): <c>region</c>; <c>endpoint</c>; <c>tls</c> (default
/// false); <c>session-token</c>; <c>wait-seconds</c> (long-poll wait, 0–20, default 5; disposing a consumer waits up
/// to this long for its poll to end); <c>group-cache-ms</c> (how long a publisher trusts its list of a topic's groups,
/// default 1000; a new group's consumer waits this long plus 200 ms before it counts as established);
/// <c>max-receive-count</c> (the native redrive safety net, default 10, raised to max deliveries + 1);
/// <c>max-retries</c> (SDK retries, default 3); <c>request-timeout-ms</c> (default 30000); <c>receive-concurrency</c>
/// (ReceiveMessage loops per consumer, default 1, at most one per 10 of max in-flight); <c>fifo</c> (default false:
/// true puts every topic on FIFO queues, as <see cref="SqsFifoTransportFactory"/>'s <c>sqs-fifo://</c> does, and the
/// bus then reports that factory's capabilities); <c>deduplication</c> (FIFO topics: <c>publish</c>, the default, gives
/// each publish call a fresh MessageDeduplicationId, reused by the SDK's retries; <c>message-id</c> uses the message id,
/// so SQS drops a second message with the same id within 5 minutes — including a redrive within 5 minutes).
/// </summary>
/// <remarks>
/// Mapping: a topic has no SQS object of its own; each group is a queue named <c>&lt;topic&gt;_&lt;group&gt;</c> (FIFO
/// topics: <c>&lt;stem&gt;_&lt;group&gt;.fifo</c>). Topic names use letters, digits and '-' (up to 40 characters), and a
/// name ending in <c>.fifo</c> makes a FIFO topic: key → MessageGroupId (unkeyed: the message id), deduplication per
/// the <c>deduplication</c> setting.
/// The dead-letter topic is <c>&lt;topic&gt;-dlq</c> (<c>&lt;stem&gt;-dlq.fifo</c>).
/// </remarks>
public sealed class SqsTransportFactory : IBusTransportFactory
{
    /// <summary>The backend's name: <c>sqs</c>.</summary>
    public const string BackendName = "sqs";

    /// <summary>What the SQS backend provides.</summary>
    public static readonly BackendCapabilities DeclaredCapabilities = new()
    {
        Backend = BackendName,
        Features = BusFeatures.FanOutToGroups | BusFeatures.CompetingConsumers | BusFeatures.RedeliveryOfAbandoned | BusFeatures.AckTimeoutRedelivery
            | BusFeatures.DelayedDelivery | BusFeatures.DelayedNack | BusFeatures.RequestReply | BusFeatures.NativeDeadLetter
            | BusFeatures.Persistence | BusFeatures.RemoteBroker | BusFeatures.SharedDeliveryCount,
        MaxMessageSize = SqsEnvelope.MaxBodySize,
        MaxTopicNameLength = SqsNames.MaxTopicNameLength,
        Remarks = new Dictionary<BusFeatures, string>
        {
            [BusFeatures.PerKeyOrdering] = "standard queues (the default) deliver in best-effort order only; a topic named '*.fifo' uses FIFO queues with per-key order (key = MessageGroupId), but capabilities describe the default topic (a bus on sqs-fifo:// or with fifo=true declares it)",
            [BusFeatures.OrderedAcrossConsumers] = "only FIFO topics ('*.fifo') keep per-key order across consumers; standard queues (the default) do not",
            [BusFeatures.OrderedRetry] = "standard queues (the default) may deliver later messages of a key while an earlier one waits for redelivery",
            [BusFeatures.Replay] = "SQS deletes a message once it is acknowledged and a new group's queue starts empty: there is nothing to replay",
            [BusFeatures.ReplayFromPosition] = "SQS has no log and no positions to start from",
            [BusFeatures.ReplayFromTime] = "SQS has no log to start from at a point in time",
            [BusFeatures.SharedDeliveryCount] = "SQS keeps ApproximateReceiveCount per message; the group queue's RedrivePolicy also dead-letters a message received too often, as a safety net",
            [BusFeatures.ExactDeliveryCount] = "the delivery count is SQS's ApproximateReceiveCount, which SQS documents as approximate (this process subtracts receives it released unseen)",
            [BusFeatures.TopicConflictDetection] = "SQS has no topic object to store options in; only Ordered is checked (it must match the '.fifo' suffix); Partitions and Retention are ignored",
            [BusFeatures.FanOutToGroups] = "emulated by the adapter: a publish sends to every group queue of the topic (listed with ListQueues, cached for group-cache-ms; a new group's consumer waits that long before it is established); not atomic across groups: a failed publish may have reached some groups",
            [BusFeatures.RequestReply] = "emulated by core with a private reply topic per bus",
            [BusFeatures.NativeDeadLetter] = "each group queue has a RedrivePolicy to the dead-letter topic's 'dlq' queue with maxReceiveCount above the subscription's max deliveries, as a safety net for consumers that die before settling; core dead-letters first, with the reason headers",
            [BusFeatures.DelayedDelivery] = "DelaySeconds per message, at most 15 minutes (longer delays are rejected); not on FIFO topics",
            [BusFeatures.AckTimeoutRedelivery] = "the ack timeout is the message's visibility timeout, rounded up to whole seconds (1 s to 12 h)",
        },
    };

    /// <inheritdoc />
    public string Backend => BackendName;

    /// <inheritdoc />
    public IReadOnlyList<string> Schemes { get; } = ["sqs"];

    /// <inheritdoc />
    public BackendCapabilities Capabilities => DeclaredCapabilities;

    /// <inheritdoc />
    public MessageTransport Create(TransportContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var settings = SqsSettings.Parse(context);
        return new SqsTransport(settings, SqsTransport.CreateClient(settings), ownsClient: true, context.LoggerFactory);
    }
}
