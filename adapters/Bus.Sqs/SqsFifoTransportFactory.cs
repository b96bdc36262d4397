using Bus.Sqs;
using Bus.Sqs.Internal;
using Bus.Transport;

[assembly: BusTransport(typeof(SqsFifoTransportFactory))]

namespace Bus.Sqs;

/// <summary>
/// Amazon SQS with every topic on FIFO queues (<c>sqs-fifo://</c>, otherwise the same URI and settings as
/// <see cref="SqsTransportFactory"/>): topic <c>orders</c> uses the queues <c>orders_&lt;group&gt;.fifo</c>, the same
/// queues as topic <c>orders.fifo</c> under <c>sqs://</c>. The key is the MessageGroupId (unkeyed messages get their
/// message id, so they are not ordered); see the <c>deduplication</c> setting for the MessageDeduplicationId.
/// </summary>
/// <remarks>
/// A consumer hands out one message per message group at a time and, on nack, releases the messages of that group it
/// received behind it, so per-key order holds under retries and across competing consumers. FIFO queues have no
/// per-message delay and lower throughput than standard queues.
/// </remarks>
public sealed class SqsFifoTransportFactory : IBusTransportFactory
{
    /// <summary>The URI scheme: <c>sqs-fifo</c>.</summary>
    public const string Scheme = "sqs-fifo";

    /// <summary>What SQS provides when every topic is FIFO.</summary>
    public static readonly BackendCapabilities DeclaredCapabilities = SqsTransportFactory.DeclaredCapabilities with
    {
        Features = (SqsTransportFactory.DeclaredCapabilities.Features & ~BusFeatures.DelayedDelivery)
            | BusFeatures.PerKeyOrdering | BusFeatures.OrderedAcrossConsumers | BusFeatures.OrderedRetry,
        Remarks = new Dictionary<BusFeatures, string>(SqsTransportFactory.DeclaredCapabilities.Remarks)
        {
            [BusFeatures.DelayedDelivery] = "SQS FIFO queues do not support a delay per message (only a delay for the whole queue)",
            [BusFeatures.PerKeyOrdering] = "FIFO queues: the key is the MessageGroupId; one message per group is handed out at a time",
            [BusFeatures.OrderedAcrossConsumers] = "SQS FIFO returns no message of a group while another of it is in flight, to any consumer",
            [BusFeatures.OrderedRetry] = "a nacked message keeps its group blocked; the messages received behind it are released with it and come back after it",
        },
    };

    /// <inheritdoc />
    public string Backend => SqsTransportFactory.BackendName;

    /// <inheritdoc />
    public IReadOnlyList<string> Schemes { get; } = [Scheme];

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
