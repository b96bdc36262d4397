using Bus.Transport;
using StackExchange.Redis;

namespace Bus.Redis.Internal;

/// <summary>
/// How a message is laid out in a stream entry: the body in field <c>body</c> (binary-safe), the message id in
/// <c>id</c>, then <c>key</c>, <c>correlation-id</c>, <c>content-type</c>, <c>reply-to</c> when set, and each header
/// as <c>h:&lt;name&gt;</c>. The entry id is the position, and its millisecond part the timestamp. Entries written
/// by other clients are read too: a missing <c>id</c> becomes the entry id, and any other field becomes a header of
/// the same name.
/// </summary>
internal static class StreamCodec
{
    public const string BodyField = "body";
    public const string IdField = "id";
    public const string KeyField = "key";
    public const string CorrelationIdField = "correlation-id";
    public const string ContentTypeField = "content-type";
    public const string ReplyToField = "reply-to";
    public const string HeaderPrefix = "h:";

    /// <summary>The field/value pairs of XADD, in order, as boxed <see cref="RedisValue"/>s.</summary>
    public static void AppendFields(OutgoingMessage message, List<object> arguments)
    {
        arguments.Add((RedisValue)BodyField);
        arguments.Add((RedisValue)(message.Body.IsEmpty ? Array.Empty<byte>() : message.Body.ToArray()));
        arguments.Add((RedisValue)IdField);
        arguments.Add((RedisValue)MessageIdEncoding.GetUtf8(message));
        Add(arguments, KeyField, message.Key);
        Add(arguments, CorrelationIdField, message.CorrelationId);
        Add(arguments, ContentTypeField, message.ContentType);
        Add(arguments, ReplyToField, message.ReplyTo);
        if (message.HasHeaders)
        {
            foreach (var (name, value) in message.Headers)
            {
                arguments.Add((RedisValue)(HeaderPrefix + name));
                arguments.Add((RedisValue)value);
            }
        }
    }

    /// <summary>The fields of an entry for <paramref name="message"/> (no boxing: this is the publish hot path).</summary>
    public static NameValueEntry[] Encode(OutgoingMessage message)
    {
        var count = 2 + (message.Key is null ? 0 : 1) + (message.CorrelationId is null ? 0 : 1) + (message.ContentType is null ? 0 : 1)
            + (message.ReplyTo is null ? 0 : 1) + (message.HasHeaders ? message.Headers.Count : 0);
        var entries = new NameValueEntry[count];
        var i = 0;
        entries[i++] = new NameValueEntry(BodyField, message.Body.IsEmpty ? Array.Empty<byte>() : message.Body.ToArray());
        entries[i++] = new NameValueEntry(IdField, MessageIdEncoding.GetUtf8(message));
        Add(entries, ref i, KeyField, message.Key);
        Add(entries, ref i, CorrelationIdField, message.CorrelationId);
        Add(entries, ref i, ContentTypeField, message.ContentType);
        Add(entries, ref i, ReplyToField, message.ReplyTo);
        if (message.HasHeaders)
        {
            foreach (var (name, value) in message.Headers)
            {
                entries[i++] = new NameValueEntry(HeaderPrefix + name, value);
            }
        }

        return entries;
    }

    /// <summary>
    /// Builds a delivery from an entry's fields (names and values alternating); <paramref name="handle"/> holds the entry
    /// id, which becomes text only if the position is read or the entry has no message id of its own.
    /// </summary>
    public static ReceivedMessage Decode(string topic, RedisValue entryId, NameValueEntry[] fields, int deliveryCount, long tag, DeliveryHandle handle)
    {
        ReadOnlyMemory<byte> body = ReadOnlyMemory<byte>.Empty;
        string? messageId = null, key = null, correlationId = null, contentType = null, replyTo = null;
        Dictionary<string, string>? headers = null;
        foreach (var field in fields)
        {
            var value = field.Value;
            switch (KnownField(field.Name))
            {
                case BodyField:
                    body = (byte[]?)value ?? [];
                    break;
                case IdField:
                    messageId = (string?)value;
                    break;
                case KeyField:
                    key = (string?)value;
                    break;
                case CorrelationIdField:
                    correlationId = (string?)value;
                    break;
                case ContentTypeField:
                    contentType = (string?)value;
                    break;
                case ReplyToField:
                    replyTo = (string?)value;
                    break;
                default:
                    var name = (string?)field.Name ?? "";
                    headers ??= new Dictionary<string, string>(StringComparer.Ordinal);
                    headers[name.StartsWith(HeaderPrefix, StringComparison.Ordinal) ? name[HeaderPrefix.Length..] : name] = (string?)value ?? "";
                    break;
            }
        }

        var timestamp = TimestampOf(entryId);
        if (string.IsNullOrEmpty(messageId))
        {
            // Not written by Bus: the entry id stands in for the message id, so its text is needed now, as both.
            var position = handle.FormatPosition();
            return new ReceivedMessage(topic, body, key, headers, position, correlationId, contentType, replyTo, deliveryCount, position, timestamp, tag, handle);
        }

        return new ReceivedMessage(topic, body, key, headers, messageId, correlationId, contentType, replyTo, deliveryCount, handle, timestamp, tag);
    }

    /// <summary>The millisecond part of a stream id (<c>&lt;ms&gt;-&lt;seq&gt;</c>) as a time; the epoch if it is not an id.</summary>
    public static DateTimeOffset TimestampOf(RedisValue entryId)
        // Beyond 9999-12-31 (Redis allows any unsigned 64-bit number): the latest time DateTimeOffset holds.
        => StreamIds.TryParse(entryId, out var ms, out _)
            ? DateTimeOffset.FromUnixTimeMilliseconds((long)Math.Min(ms, 253402300799999UL))
            : DateTimeOffset.UnixEpoch;

    /// <summary>
    /// The field's name if it is one of the message's own fields, compared as bytes (a field name read from Redis would
    /// otherwise become a new string per field per message); null for any other field. The name is copied to the
    /// stack: StackExchange.Redis keeps short values inline, and casting one to <see cref="ReadOnlyMemory{T}"/> copies
    /// it to a new array (32 bytes per field per message, measured).
    /// </summary>
    private static string? KnownField(RedisValue name)
    {
        Span<byte> buffer = stackalloc byte[16];
        if (name.GetByteCount() > buffer.Length)
        {
            return null;
        }

        var bytes = buffer[..name.CopyTo(buffer)];
        return bytes.Length switch
        {
            2 when bytes.SequenceEqual("id"u8) => IdField,
            3 when bytes.SequenceEqual("key"u8) => KeyField,
            4 when bytes.SequenceEqual("body"u8) => BodyField,
            8 when bytes.SequenceEqual("reply-to"u8) => ReplyToField,
            12 when bytes.SequenceEqual("content-type"u8) => ContentTypeField,
            14 when bytes.SequenceEqual("correlation-id"u8) => CorrelationIdField,
            _ => null,
        };
    }

    private static void Add(NameValueEntry[] entries, ref int index, string field, string? value)
    {
        if (value is not null)
        {
            entries[index++] = new NameValueEntry(field, value);
        }
    }

    private static void Add(List<object> arguments, string field, string? value)
    {
        if (value is not null)
        {
            arguments.Add((RedisValue)field);
            arguments.Add((RedisValue)value);
        }
    }
}
