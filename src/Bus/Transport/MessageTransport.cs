using System.Threading.Channels;

namespace Bus.Transport;

/// <summary>
/// The small service-provider interface an adapter implements: provision, publish, receive, settle.
/// Everything else (validation, dispatch, per-key ordering of handlers, retries, delivery limits, dead-lettering,
/// redrive, request/reply, telemetry) is written once in core on top of it.
/// </summary>
/// <remarks>
/// Implementations are thread-safe. Exceptions they throw are wrapped by core into <see cref="BusException"/>
/// unless they are one already; throw <see cref="BusException"/> yourself when you can name the reason better.
/// </remarks>
public abstract class MessageTransport : IAsyncDisposable
{
    /// <summary>What this backend declares it can do.</summary>
    public abstract BackendCapabilities Capabilities { get; }

    /// <summary>The backend's short name (from <see cref="Capabilities"/>).</summary>
    public string Backend => Capabilities.Backend;

    /// <summary>
    /// Connects and checks the broker answers. Core calls it once, bounded by <see cref="BusOptions.ConnectTimeout"/>,
    /// before the first operation. The default does nothing.
    /// </summary>
    /// <param name="cancellationToken">Fires when the connect timeout elapses or the caller gives up.</param>
    public virtual ValueTask ConnectAsync(CancellationToken cancellationToken) => default;

    /// <summary>
    /// Called before anything is created for a topic that belongs to this bus alone: its private reply topic and that
    /// topic's dead-letter topic, which disposing the bus deletes (<see cref="DeleteTopicAsync"/>). A bus that ends
    /// without disposing (a crash) leaves them behind; a transport whose broker can remove unused queues by itself
    /// may create this topic's queues that way (RabbitMQ: <c>x-expires</c>). The default does nothing.
    /// </summary>
    /// <param name="topic">The topic's name.</param>
    public virtual void RegisterPrivateTopic(string topic)
    {
    }

    /// <summary>
    /// True when every publish completes or fails within <see cref="BusOptions.OperationTimeout"/> on its own (the
    /// client library enforces that timeout), so core does not start a timer per publish call to bound it. A publish
    /// that times out should fail with a <see cref="TimeoutException"/>. The default is false.
    /// </summary>
    public virtual bool BoundsPublishTime => false;

    /// <summary>
    /// Returns why <paramref name="topic"/> is not a legal name on this backend, or <see langword="null"/> if it is.
    /// Core has already rejected null, empty and over-long names. The default allows letters, digits, '.', '_' and '-'.
    /// </summary>
    /// <param name="topic">A non-empty topic name.</param>
    public virtual string? ValidateTopicName(string topic) => TopicNames.ValidateConservative(topic);

    /// <summary>The dead-letter topic for <paramref name="topic"/>. The default is <c>&lt;topic&gt;.dlq</c>.</summary>
    /// <param name="topic">A valid topic name.</param>
    public virtual string GetDeadLetterTopic(string topic) => topic + ".dlq";

    /// <summary>The size core compares with <see cref="BackendCapabilities.MaxMessageSize"/>. The default counts body, key and headers.</summary>
    /// <param name="message">The message to measure.</param>
    public virtual long MeasureMessage(OutgoingMessage message) => MessageSize.Estimate(message);

    /// <summary>
    /// Whether <see cref="MeasureMessage"/> can exceed the body's bytes plus three bytes per character of the rest (a
    /// body sent as base64, text escaped on the wire). Core skips measuring a message whose quick bound of that kind is
    /// under the limit; a transport whose encoding grows more says so here, and every message is measured.
    /// </summary>
    public virtual bool EncodingCanExceedQuickBound => false;

    /// <summary>
    /// Why this backend cannot send <paramref name="message"/> as it is, beyond its size (for example AMQP 0-9-1 sends
    /// a message's header table in one frame, and header names are at most 255 bytes), or <see langword="null"/>.
    /// Core throws <see cref="BusFailureReason.InvalidMessage"/> with the reason before anything is sent.
    /// </summary>
    /// <param name="message">The message, validated by core otherwise.</param>
    public virtual string? ValidateMessage(OutgoingMessage message) => null;

    /// <summary>Creates the topic (and the durable groups it names) if missing. Idempotent.</summary>
    /// <param name="topic">What to create.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <exception cref="BusException">With <see cref="BusFailureReason.TopicConflict"/> when it exists with conflicting options.</exception>
    public abstract ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken);

    /// <summary>
    /// Deletes a topic, with what the backend keeps for the named groups on this topic only (their queues or
    /// streams). Never delete anything a group has on other topics: on some backends a
    /// group spans topics (Kafka's consumer groups, and the dead-letter group that reads every dead-letter topic).
    /// Core calls it on dispose for its private request/reply topic and that topic's dead-letter topic, which would
    /// otherwise be left behind by every bus that made a request, and for <see cref="MessageBus.DeleteTopicAsync"/>
    /// (tests and tooling). The default deletes nothing: the topic stays on the broker. Deleting what does not exist
    /// is not an error.
    /// </summary>
    /// <param name="topic">The topic and the groups it had.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    public virtual ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken) => default;

    /// <summary>
    /// Publishes one message and completes when the backend has confirmed it durably. The message is validated and
    /// has its <see cref="OutgoingMessage.MessageId"/> set. Copy the body if you keep it beyond this call.
    /// </summary>
    /// <param name="topic">The (ensured) topic.</param>
    /// <param name="message">The message.</param>
    /// <param name="cancellationToken">Cancels waiting; the message may still have been sent.</param>
    public abstract ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken);

    /// <summary>
    /// Publishes a batch and completes when every message is confirmed. The default starts every publish before
    /// awaiting any, so confirms are pipelined; override when the client has a true batch call.
    /// </summary>
    /// <param name="topic">The (ensured) topic.</param>
    /// <param name="messages">The messages, in order.</param>
    /// <param name="confirmations">
    /// Where a failing call marks the messages the backend did confirm, before it completes (read only on failure).
    /// </param>
    /// <param name="cancellationToken">
    /// Cancels waiting. Where <see cref="BoundsPublishTime"/> is false, core also cancels it when the call gives up
    /// (operation timeout) and then waits for this to complete: a transport that reads the messages as it goes must stop
    /// reading them once it is cancelled, since the caller may reuse them as soon as its call has ended.
    /// </param>
    public virtual async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        var pending = new Task?[messages.Count];
        try
        {
            for (var i = 0; i < messages.Count; i++)
            {
                pending[i] = PublishAsync(topic, messages[i], cancellationToken).AsTask();
            }

            await Task.WhenAll(pending!).ConfigureAwait(false);
        }
        catch
        {
            await Task.WhenAll(pending.OfType<Task>()).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            confirmations.ConfirmCompleted(pending);
            throw;
        }
    }

    /// <summary>
    /// Opens a receiver for one consumer in a group. When it returns, the group exists and messages published from
    /// then on reach it (the subscription is established).
    /// </summary>
    /// <param name="topic">The (ensured) topic.</param>
    /// <param name="options">Validated options; do not modify.</param>
    /// <param name="cancellationToken">Cancels opening.</param>
    public abstract ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken);

    /// <summary>
    /// Stores <paramref name="copy"/> on <paramref name="deadLetterTopic"/> and settles <paramref name="message"/>
    /// so that it is not delivered again. The default publishes, then acks (at-least-once: a crash between the two
    /// leaves a duplicate in the dead-letter topic, never a loss); override to do both atomically where the backend can.
    /// When the copy cannot be stored, the default nacks the delivery with a delay of one second before it rethrows:
    /// core counts a failed settlement as the end of the delivery, and a backend that never takes a delivery back by
    /// itself while its consumer lives (RabbitMQ) would otherwise keep it, and its key, for good.
    /// </summary>
    /// <param name="receiver">The receiver that delivered the message.</param>
    /// <param name="message">The delivery to give up on.</param>
    /// <param name="deadLetterTopic">The (ensured) dead-letter topic.</param>
    /// <param name="copy">The dead-letter copy, with <see cref="DeadLetterHeaders"/> set.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    public virtual async ValueTask DeadLetterAsync(TransportReceiver receiver, ReceivedMessage message, string deadLetterTopic, OutgoingMessage copy, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(receiver);
        try
        {
            await PublishAsync(deadLetterTopic, copy, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            try
            {
                // Delivered again after a pause (not at once: a dead-letter topic that stays broken would make it a
                // busy loop), counted, and dead-lettered again once the copy can be stored.
                await receiver.NackAsync(message, DeadLetterFailureRedeliveryDelay, CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception)
            {
                // The publish's failure is the one to report; a backend that cannot take the nack either redelivers on
                // its own terms (ack timeout, closed channel).
            }

            throw;
        }

        await receiver.AckAsync(message, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>How long a delivery whose dead-letter copy could not be stored waits before it is delivered again.</summary>
    private static readonly TimeSpan DeadLetterFailureRedeliveryDelay = TimeSpan.FromSeconds(1);

    /// <summary>Closes connections. Receivers are disposed by core first.</summary>
    public virtual ValueTask DisposeAsync()
    {
        GC.SuppressFinalize(this);
        return default;
    }
}

/// <summary>
/// One consumer's stream of deliveries from a transport, and their settlement.
/// </summary>
public abstract class TransportReceiver : IAsyncDisposable
{
    /// <summary>
    /// Deliveries in the order the backend gives them. Core never holds more than the subscription's
    /// <see cref="SubscriptionOptions.MaxInFlight"/> unsettled; keep the backend's prefetch at that value. Complete
    /// the channel with an exception when the receiver fails for good (core reports it to the consumer). Core makes one
    /// read at a time, so the channel may be created with <c>SingleReader = true</c>, which spares a lock per write and
    /// per read; a receiver that drops what is left when it closes should do so with <c>TryRead</c> only.
    /// </summary>
    public abstract ChannelReader<ReceivedMessage> Deliveries { get; }

    /// <summary>Acknowledges a delivery. A delivery the backend no longer knows (expired, released) is ignored.</summary>
    /// <param name="message">A delivery of this receiver.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    public abstract ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken);

    /// <summary>Returns a delivery for redelivery after <paramref name="delay"/> (zero: at once).</summary>
    /// <param name="message">A delivery of this receiver.</param>
    /// <param name="delay">The minimum time before redelivery.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    public abstract ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken);

    /// <summary>
    /// Stops receiving and releases every unsettled delivery back to the group (buffered ones included), so that
    /// nothing is lost: they are redelivered to the group's other or next consumer.
    /// </summary>
    public abstract ValueTask DisposeAsync();
}
