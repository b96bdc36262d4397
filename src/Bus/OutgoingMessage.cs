using Bus.Internal;

namespace Bus;

/// <summary>
/// A message to publish. Mutable so it can be built up by the caller; the bus takes a snapshot when
/// <see cref="IMessageBus.PublishAsync"/> is called, so later changes have no effect on what was sent.
/// </summary>
public sealed class OutgoingMessage
{
    private Dictionary<string, string>? _headers;
    private string? _messageId;
    private UInt128 _assignedId; // an id the bus assigned, kept as a number until someone reads its text

    /// <summary>Creates an empty message.</summary>
    public OutgoingMessage()
    {
    }

    /// <summary>Creates a message with the given body.</summary>
    /// <param name="body">The payload bytes.</param>
    public OutgoingMessage(ReadOnlyMemory<byte> body) => Body = body;

    /// <summary>The payload. Empty by default; any bytes are allowed.</summary>
    public ReadOnlyMemory<byte> Body { get; set; }

    /// <summary>
    /// Optional ordering and partitioning key. Messages with the same key are delivered in publish order
    /// to a subscription with per-key ordering. <see langword="null"/> means unordered.
    /// </summary>
    public string? Key { get; set; }

    /// <summary>
    /// Application headers. Names and values are strings; UTF-8 is preserved end to end. The names <c>bus-key</c>,
    /// <c>bus-message-id</c>, <c>bus-correlation-id</c>, <c>bus-content-type</c> and <c>bus-reply-to</c> are reserved
    /// (some backends carry the message's own fields in them): publishing a message with one fails with
    /// <see cref="BusFailureReason.InvalidMessage"/>. The dead-letter headers (<see cref="DeadLetterHeaders"/>) may be set.
    /// </summary>
    public IDictionary<string, string> Headers => _headers ??= new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>Whether any header has been set, without allocating the header dictionary.</summary>
    public bool HasHeaders => _headers is { Count: > 0 };

    /// <summary>
    /// The message id. When <see langword="null"/>, the bus assigns a time-ordered id (a version 7 UUID)
    /// at publish time and writes it back to this property.
    /// </summary>
    public string? MessageId
    {
        get => _messageId ?? (_assignedId == default ? null : _messageId = MessageIds.Format(_assignedId));
        set
        {
            _messageId = value;
            _assignedId = default;
        }
    }

    /// <summary>Optional correlation id, carried unchanged; request/reply uses it to match replies.</summary>
    public string? CorrelationId { get; set; }

    /// <summary>Optional MIME content type of <see cref="Body"/>, carried unchanged.</summary>
    public string? ContentType { get; set; }

    /// <summary>Optional topic to which a responder should send its reply.</summary>
    public string? ReplyTo { get; set; }

    /// <summary>
    /// Optional delivery delay: the message is not delivered before this much time has passed after publish.
    /// Requires <see cref="BusFeatures.DelayedDelivery"/>; <see langword="null"/> or zero means immediately.
    /// </summary>
    public TimeSpan? Delay { get; set; }

    internal Dictionary<string, string>? HeadersOrNull => _headers;

    /// <summary>The id as text if it has any yet (set by the caller, or an assigned one that was read); else null.</summary>
    internal string? MessageIdText => _messageId;

    /// <summary>The id the bus assigned (whether or not its text was read since); zero when the caller set the id.</summary>
    internal UInt128 AssignedId => _assignedId;

    /// <summary>The id's length in characters (an assigned one is 32 hex digits) without formatting it.</summary>
    internal int MessageIdLength => _messageId?.Length ?? (_assignedId == default ? 0 : 32);

    /// <summary>A copy of its own (the same body memory; its headers copied), for the bus to send with properties of its own.</summary>
    internal OutgoingMessage Copy() => WithHeaders(_headers is null ? null : new Dictionary<string, string>(_headers, StringComparer.Ordinal));

    /// <summary>A copy with other headers (the same body memory, id and properties), for the bus to send instead.</summary>
    internal OutgoingMessage WithHeaders(Dictionary<string, string>? headers) => new(Body)
    {
        _headers = headers,
        _messageId = _messageId,
        _assignedId = _assignedId,
        Key = Key,
        CorrelationId = CorrelationId,
        ContentType = ContentType,
        ReplyTo = ReplyTo,
        Delay = Delay,
    };

    /// <summary>
    /// Gives the message a new time-ordered id if it has none. Only the number is made: formatting it costs a string
    /// per message, which the in-memory backend never needs unless someone reads <see cref="MessageId"/>.
    /// </summary>
    internal void AssignIdIfMissing()
    {
        if (_messageId is null && _assignedId == default)
        {
            _assignedId = MessageIds.NewValue();
        }
    }

    /// <summary>Creates a message whose body is the UTF-8 encoding of <paramref name="text"/>.</summary>
    /// <param name="text">The text to encode.</param>
    /// <param name="key">Optional ordering key.</param>
    public static OutgoingMessage FromText(string text, string? key = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new OutgoingMessage(System.Text.Encoding.UTF8.GetBytes(text)) { Key = key, ContentType = "text/plain; charset=utf-8" };
    }
}
