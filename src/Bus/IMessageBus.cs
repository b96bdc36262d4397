namespace Bus;

/// <summary>
/// One messaging contract over every backend. Thread-safe. Create one per application (it owns the
/// connections) with <c>services.AddBus(...)</c> or <see cref="MessageBus.Create(BusOptions, Microsoft.Extensions.Logging.ILoggerFactory?)"/>.
/// Disposing stops every subscription gracefully (handlers finish, and may publish), waits for the publishes under way
/// (at most <see cref="BusOptions.OperationTimeout"/>), then closes the backend.
/// </summary>
public interface IMessageBus : IAsyncDisposable
{
    /// <summary>The backend's short name, e.g. <c>rabbitmq</c>.</summary>
    string Backend { get; }

    /// <summary>What the backend declares it can do.</summary>
    BackendCapabilities Capabilities { get; }

    /// <summary>
    /// Connects now, bounded by <see cref="BusOptions.ConnectTimeout"/>, so that an application can fail at startup
    /// rather than at its first message. Otherwise the first operation connects (and a failed connect is tried again
    /// by the next one).
    /// </summary>
    /// <param name="cancellationToken">Stops trying.</param>
    /// <exception cref="BusException">With <see cref="BusFailureReason.Connection"/> when the broker cannot be reached in time.</exception>
    ValueTask ConnectAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Creates the topic and its dead-letter topic if missing. Idempotent; optional (publishing and subscribing
    /// ensure topics with default options).
    /// </summary>
    /// <param name="topic">The topic name.</param>
    /// <param name="options">Options, or <see langword="null"/> for the backend's defaults.</param>
    /// <param name="cancellationToken">Cancels the call.</param>
    /// <exception cref="BusException">An illegal name (<see cref="BusFailureReason.InvalidTopic"/>), conflicting options
    /// (<see cref="BusFailureReason.TopicConflict"/>) or a backend failure.</exception>
    ValueTask EnsureTopicAsync(string topic, TopicOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>Publishes a message; completes when the backend has confirmed it durably.</summary>
    /// <param name="topic">The topic.</param>
    /// <param name="message">The message; its <see cref="OutgoingMessage.MessageId"/> is set if it was empty.</param>
    /// <param name="cancellationToken">Cancels waiting (the message may still have been sent).</param>
    /// <exception cref="ArgumentNullException"><paramref name="message"/> is null.</exception>
    /// <exception cref="MessageTooLargeException">The message exceeds the backend's limit; nothing was sent.</exception>
    /// <exception cref="BusException">An illegal topic, an unsupported option, or a backend failure.</exception>
    ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken = default);

    /// <summary>
    /// Publishes messages without waiting for each confirmation in turn; completes when all are confirmed.
    /// Every message is validated before any is sent. Order is kept per key.
    /// </summary>
    /// <param name="topic">The topic.</param>
    /// <param name="messages">The messages.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    /// <exception cref="MessageTooLargeException">A message exceeds the backend's limit; nothing was sent.</exception>
    /// <exception cref="PublishBatchException">
    /// A backend failure or timeout: <see cref="PublishBatchException.UnconfirmedMessages"/> lists the messages to publish again
    /// (all of them when it failed before sending); the others were stored.
    /// </exception>
    /// <exception cref="BusException">An illegal topic or message; nothing was sent.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired; some messages may have been stored.</exception>
    ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, CancellationToken cancellationToken = default);

    /// <summary>
    /// Joins <see cref="SubscriptionOptions.Group"/> as a pull consumer. When this returns, the group exists and every
    /// message published afterwards reaches it.
    /// </summary>
    /// <param name="topic">The topic.</param>
    /// <param name="options">The group and its settings (copied).</param>
    /// <param name="cancellationToken">Cancels joining.</param>
    /// <exception cref="BusException">Invalid options, an unsupported start position, or a backend failure.</exception>
    ValueTask<MessageConsumer> CreateConsumerAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken = default);

    /// <summary>
    /// Runs <paramref name="handler"/> for each message of the group. Returning acks the message (unless the handler
    /// settled it); throwing retries it in place, and after <see cref="SubscriptionOptions.MaxDeliveries"/> moves it
    /// to the dead-letter topic. Established when this returns.
    /// </summary>
    /// <param name="topic">The topic.</param>
    /// <param name="handler">The handler; its token fires only when shutdown outlasts <see cref="SubscriptionOptions.ShutdownTimeout"/>.</param>
    /// <param name="options">The group and its settings (copied).</param>
    /// <param name="cancellationToken">Cancels subscribing (not the subscription: dispose it to stop).</param>
    ValueTask<ISubscription> SubscribeAsync(string topic, Func<ReceivedMessage, CancellationToken, ValueTask> handler, SubscriptionOptions options, CancellationToken cancellationToken = default);

    /// <summary>
    /// Moves dead-lettered messages back to the topics they came from (read with <see cref="BusDefaults.DeadLetterGroup"/>),
    /// until the dead-letter topic has been idle for <see cref="RedriveOptions.IdleTimeout"/>.
    /// </summary>
    /// <param name="topic">The original topic whose dead-letter topic to drain.</param>
    /// <param name="options">Options, or <see langword="null"/>.</param>
    /// <param name="cancellationToken">Stops early.</param>
    /// <returns>How many messages were moved.</returns>
    ValueTask<int> RedriveAsync(string topic, RedriveOptions? options = null, CancellationToken cancellationToken = default);

    /// <summary>
    /// Publishes <paramref name="request"/> with a reply topic and waits for the reply carrying its correlation id.
    /// A responder answers with <see cref="MessageBusExtensions.ReplyAsync"/>. Where the backend has no native
    /// request/reply, replies come back on a private topic of this bus (<c>bus-replies-…</c>), created at the first
    /// request and deleted with its dead-letter topic when the bus is disposed (a process that ends without disposing
    /// leaves them behind; on a Kafka cluster that does not answer admin requests they stay too).
    /// </summary>
    /// <param name="topic">The responder's topic.</param>
    /// <param name="request">
    /// The request. Its reply topic is set; it is sent with its correlation id, or with a new one when it has none (the
    /// reply carries it), which is not written back: sent again, the message gets another, so that a late reply to
    /// the first request cannot be taken for the reply to the second.
    /// </param>
    /// <param name="timeout">How long to wait for the reply.</param>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <exception cref="BusException">With <see cref="BusFailureReason.Timeout"/> when no reply came in time.</exception>
    ValueTask<ReceivedMessage> RequestAsync(string topic, OutgoingMessage request, TimeSpan timeout, CancellationToken cancellationToken = default);

    /// <summary>The default dead-letter topic of <paramref name="topic"/> on this backend.</summary>
    /// <param name="topic">A topic name.</param>
    string GetDeadLetterTopic(string topic);
}
