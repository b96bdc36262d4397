using System.Globalization;
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
        arguments.Add((RedisValue)(message.MessageId ?? ""));
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

    /// <summary>The fields of an entry for <paramref name="message"/>.</summary>
    public static NameValueEntry[] Encode(OutgoingMessage message)
    {
        var flat = new List<object>(16);
        AppendFields(message, flat);
        var entries = new NameValueEntry[flat.Count / 2];
        for (var i = 0; i < entries.Length; i++)
        {
            entries[i] = new NameValueEntry((RedisValue)flat[2 * i], (RedisValue)flat[(2 * i) + 1]);
        }

        return entries;
    }

    /// <summary>Builds a delivery from an entry's id and its fields (names and values alternating).</summary>
    public static ReceivedMessage Decode(string topic, string entryId, IReadOnlyList<KeyValuePair<RedisValue, RedisValue>> fields, int deliveryCount, long tag, object state)
    {
        ReadOnlyMemory<byte> body = ReadOnlyMemory<byte>.Empty;
        string? messageId = null, key = null, correlationId = null, contentType = null, replyTo = null;
        Dictionary<string, string>? headers = null;
        foreach (var (nameValue, value) in fields)
        {
            var name = (string?)nameValue ?? "";
            switch (name)
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
                    headers ??= new Dictionary<string, string>(StringComparer.Ordinal);
                    headers[name.StartsWith(HeaderPrefix, StringComparison.Ordinal) ? name[HeaderPrefix.Length..] : name] = (string?)value ?? "";
                    break;
            }
        }

        return new ReceivedMessage(
            topic, body, key, headers, string.IsNullOrEmpty(messageId) ? entryId : messageId, correlationId, contentType, replyTo,
            deliveryCount, entryId, TimestampOf(entryId), tag, state);
    }

    /// <summary>The millisecond part of a stream id as a time.</summary>
    public static DateTimeOffset TimestampOf(string entryId)
    {
        var dash = entryId.IndexOf('-');
        var ms = dash < 0 ? entryId : entryId[..dash];
        return long.TryParse(ms, NumberStyles.None, CultureInfo.InvariantCulture, out var value)
            ? DateTimeOffset.FromUnixTimeMilliseconds(Math.Min(value, 253402300799999))
            : DateTimeOffset.UnixEpoch;
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
