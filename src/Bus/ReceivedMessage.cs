using Bus.Internal;

namespace Bus;

/// <summary>
/// A delivered message: everything that was sent plus where and how often it was delivered, and the
/// settlement methods. Settlement is idempotent and exclusive: the first of <see cref="AckAsync"/>,
/// <see cref="NackAsync"/> or <see cref="DeadLetterAsync"/> wins and later calls do nothing.
/// </summary>
/// <remarks>
/// Transports create instances with <see cref="ReceivedMessage(string, ReadOnlyMemory{byte}, string?, IReadOnlyDictionary{string, string}?, string, string?, string?, string?, int, string, DateTimeOffset, long, object?)"/>,
/// or, to format the position only when it is read, <see cref="ReceivedMessage(string, ReadOnlyMemory{byte}, string?, IReadOnlyDictionary{string, string}?, string, string?, string?, string?, int, Transport.DeliveryHandle, DateTimeOffset, long)"/>;
/// applications only receive them.
/// </remarks>
public sealed class ReceivedMessage
{
    private static readonly IReadOnlyDictionary<string, string> NoHeaders = new Dictionary<string, string>(0);

    private int _settlement; // a SettlementState
    private int _deliveryCount;
    private string? _messageId;  // null while only _assignedId is known
    private UInt128 _assignedId;
    private string? _position;   // null while only _offset is known
    private long _offset;
    internal IMessageSettler? Owner;

    /// <summary>Creates a delivered message. For transport implementations.</summary>
    /// <param name="topic">The topic it was published to.</param>
    /// <param name="body">The payload.</param>
    /// <param name="key">The ordering key, if any.</param>
    /// <param name="headers">Application headers, or <see langword="null"/> for none.</param>
    /// <param name="messageId">The message id assigned at publish.</param>
    /// <param name="correlationId">The correlation id, if any.</param>
    /// <param name="contentType">The content type, if any.</param>
    /// <param name="replyTo">The reply topic, if any.</param>
    /// <param name="deliveryCount">1 for the first delivery, then counting up.</param>
    /// <param name="position">The backend's opaque position (offset, stream id, sequence).</param>
    /// <param name="timestamp">When the backend accepted the message.</param>
    /// <param name="deliveryTag">The transport's numeric handle for settling this delivery.</param>
    /// <param name="transportState">The transport's object handle for settling this delivery, if it needs one.</param>
    public ReceivedMessage(
        string topic,
        ReadOnlyMemory<byte> body,
        string? key,
        IReadOnlyDictionary<string, string>? headers,
        string messageId,
        string? correlationId,
        string? contentType,
        string? replyTo,
        int deliveryCount,
        string position,
        DateTimeOffset timestamp,
        long deliveryTag = 0,
        object? transportState = null)
        : this(topic, body, key, headers, messageId, default, correlationId, contentType, replyTo, deliveryCount, 0, timestamp, deliveryTag)
    {
        _position = position;
        TransportState = transportState;
    }

    /// <summary>
    /// Creates a delivered message whose <see cref="Position"/> <paramref name="handle"/> formats when it is first read.
    /// For transport implementations.
    /// </summary>
    /// <param name="topic">The topic it was published to.</param>
    /// <param name="body">The payload.</param>
    /// <param name="key">The ordering key, if any.</param>
    /// <param name="headers">Application headers, or <see langword="null"/> for none.</param>
    /// <param name="messageId">The message id assigned at publish.</param>
    /// <param name="correlationId">The correlation id, if any.</param>
    /// <param name="contentType">The content type, if any.</param>
    /// <param name="replyTo">The reply topic, if any.</param>
    /// <param name="deliveryCount">1 for the first delivery, then counting up.</param>
    /// <param name="handle">The transport's handle for settling this delivery, which also formats its position; it becomes <see cref="TransportState"/>.</param>
    /// <param name="timestamp">When the backend accepted the message.</param>
    /// <param name="deliveryTag">The transport's numeric handle for settling this delivery.</param>
    /// <remarks>
    /// This constructor and the one taking the position as text differ only in that argument, so a
    /// <see langword="null"/> passed there is ambiguous or, with all twelve arguments, binds to this one and throws.
    /// </remarks>
    /// <exception cref="ArgumentNullException"><paramref name="handle"/> is <see langword="null"/>.</exception>
    public ReceivedMessage(
        string topic,
        ReadOnlyMemory<byte> body,
        string? key,
        IReadOnlyDictionary<string, string>? headers,
        string messageId,
        string? correlationId,
        string? contentType,
        string? replyTo,
        int deliveryCount,
        Transport.DeliveryHandle handle,
        DateTimeOffset timestamp,
        long deliveryTag = 0)
        : this(topic, body, key, headers, messageId, default, correlationId, contentType, replyTo, deliveryCount, 0, timestamp, deliveryTag)
    {
        ArgumentNullException.ThrowIfNull(handle);
        TransportState = handle;
    }

    /// <summary>
    /// Creates a delivered message whose id (when <paramref name="messageId"/> is null: the assigned
    /// <paramref name="assignedId"/>) and position (<paramref name="offset"/>) become text only when read. For the
    /// in-memory backend, where formatting them was two strings per delivery that nobody might read.
    /// </summary>
    internal ReceivedMessage(
        string topic,
        ReadOnlyMemory<byte> body,
        string? key,
        IReadOnlyDictionary<string, string>? headers,
        string? messageId,
        UInt128 assignedId,
        string? correlationId,
        string? contentType,
        string? replyTo,
        int deliveryCount,
        long offset,
        DateTimeOffset timestamp,
        long deliveryTag)
    {
        Topic = topic;
        Body = body;
        Key = key;
        Headers = headers ?? NoHeaders;
        _messageId = messageId;
        _assignedId = assignedId;
        CorrelationId = correlationId;
        ContentType = contentType;
        ReplyTo = replyTo;
        _deliveryCount = deliveryCount;
        _offset = offset;
        Timestamp = timestamp;
        DeliveryTag = deliveryTag;
    }

    /// <summary>The topic the message was published to (for a dead-letter copy: the dead-letter topic).</summary>
    public string Topic { get; }

    /// <summary>The payload, byte for byte as published.</summary>
    public ReadOnlyMemory<byte> Body { get; }

    /// <summary>The ordering key, or <see langword="null"/>.</summary>
    public string? Key { get; }

    /// <summary>Application headers (never <see langword="null"/>).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; }

    /// <summary>The message id assigned at publish.</summary>
    public string MessageId => _messageId ?? (_assignedId == default ? null! : _messageId = MessageIds.Format(_assignedId));

    /// <summary>The correlation id, or <see langword="null"/>.</summary>
    public string? CorrelationId { get; }

    /// <summary>The content type, or <see langword="null"/>.</summary>
    public string? ContentType { get; }

    /// <summary>The topic a reply should go to, or <see langword="null"/>.</summary>
    public string? ReplyTo { get; }

    /// <summary>
    /// How many times this message has been delivered to the group, this delivery included (1 the first time).
    /// In a handler subscription, in-place retries count as deliveries.
    /// </summary>
    public int DeliveryCount => Volatile.Read(ref _deliveryCount);

    /// <summary>The backend's opaque position of this message; usable as <see cref="StartPosition.At(string)"/>.</summary>
    public string Position => _position ??= TransportState is Transport.DeliveryHandle handle
        ? handle.FormatPosition()
        : _offset.ToString(System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>When the backend accepted the message.</summary>
    public DateTimeOffset Timestamp { get; }

    /// <summary>The transport's numeric handle for this delivery. For transport implementations.</summary>
    public long DeliveryTag { get; }

    /// <summary>
    /// The transport's object handle for this delivery (a <see cref="Transport.DeliveryHandle"/> when the transport formats
    /// the position on demand). For transport implementations.
    /// </summary>
    public object? TransportState { get; }

    /// <summary>Whether the message has been settled (acked, nacked or dead-lettered).</summary>
    public bool IsSettled => Volatile.Read(ref _settlement) != (int)SettlementState.Pending;

    /// <summary>How the message was settled, or <see cref="SettlementState.Pending"/>.</summary>
    public SettlementState Settlement => (SettlementState)Volatile.Read(ref _settlement);

    /// <summary>The body decoded as UTF-8.</summary>
    public string GetText() => System.Text.Encoding.UTF8.GetString(Body.Span);

    /// <summary>Acknowledges the message: it is done and will not be delivered to this group again.</summary>
    /// <param name="cancellationToken">Cancels waiting for the backend.</param>
    /// <exception cref="BusException">The backend failed to record the acknowledgement.</exception>
    public ValueTask AckAsync(CancellationToken cancellationToken = default)
        => TrySettle(SettlementState.Acked)
            ? Settler.AckAsync(this, cancellationToken)
            : default;

    /// <summary>Returns the message for redelivery, optionally after <paramref name="delay"/>.</summary>
    /// <param name="delay">Wait at least this long before redelivering; <see langword="null"/> for at once.</param>
    /// <param name="cancellationToken">Cancels waiting for the backend.</param>
    /// <exception cref="BusException">The backend failed to record the nack.</exception>
    public ValueTask NackAsync(TimeSpan? delay = null, CancellationToken cancellationToken = default)
        => TrySettle(SettlementState.Nacked)
            ? Settler.NackAsync(this, delay ?? TimeSpan.Zero, cancellationToken)
            : default;

    /// <summary>
    /// Moves the message to the subscription's dead-letter topic with a reason, skipping any remaining retries.
    /// </summary>
    /// <param name="reason">Why, for whoever reads the dead-letter topic (required).</param>
    /// <param name="description">Optional detail.</param>
    /// <param name="cancellationToken">Cancels waiting for the backend.</param>
    /// <exception cref="BusException">The backend failed to store the dead-letter copy.</exception>
    public ValueTask DeadLetterAsync(string reason, string? description = null, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(reason);
        return TrySettle(SettlementState.DeadLettered)
            ? Settler.DeadLetterAsync(this, reason, description, cancellationToken)
            : default;
    }

    private IMessageSettler Settler => Owner ?? throw new InvalidOperationException("This message was not delivered through a consumer and cannot be settled.");

    private bool TrySettle(SettlementState state)
        => Interlocked.CompareExchange(ref _settlement, (int)state, (int)SettlementState.Pending) == (int)SettlementState.Pending;

    /// <summary>Counts one in-place retry of a handler subscription.</summary>
    internal void CountRetry() => Interlocked.Increment(ref _deliveryCount);

    /// <summary>Reopens a message after its settlement failed, so that another settlement can be tried.</summary>
    internal void ResetSettlement() => Volatile.Write(ref _settlement, (int)SettlementState.Pending);
}
