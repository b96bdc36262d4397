using System.Globalization;

namespace Bus.Memory;

/// <summary>A published message as the in-memory broker keeps it: an immutable snapshot.</summary>
internal sealed class StoredMessage
{
    private string? _position;

    public StoredMessage(OutgoingMessage message, DateTimeOffset timestamp)
    {
        Body = message.Body.ToArray();
        Key = message.Key;
        Headers = message.HasHeaders ? new Dictionary<string, string>(message.Headers, StringComparer.Ordinal) : null;
        MessageId = message.MessageId!;
        CorrelationId = message.CorrelationId;
        ContentType = message.ContentType;
        ReplyTo = message.ReplyTo;
        Timestamp = timestamp;
    }

    public long Offset { get; set; } = -1;

    public byte[] Body { get; }

    public string? Key { get; }

    public IReadOnlyDictionary<string, string>? Headers { get; }

    public string MessageId { get; }

    public string? CorrelationId { get; }

    public string? ContentType { get; }

    public string? ReplyTo { get; }

    public DateTimeOffset Timestamp { get; }

    public string Position => _position ??= Offset.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A message waiting in (or handed out by) one group, with that group's delivery count.</summary>
internal struct Pending(StoredMessage message)
{
    public readonly StoredMessage Message = message;
    public int Deliveries;
}
