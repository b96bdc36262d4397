using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Amazon.SQS.Model;
using Bus.Transport;

namespace Bus.Sqs.Internal;

/// <summary>
/// How a Bus message travels as an SQS message. SQS allows at most 10 message attributes and text bodies only, so:
/// <list type="bullet">
/// <item>every Bus field (message id, key, correlation id, content type, reply-to, headers, body encoding) goes into
/// one String attribute <c>bus</c> holding compact JSON, escaped to pure ASCII (so no Unicode rule of SQS or an
/// emulator can reject it);</item>
/// <item>a body that is valid UTF-8 made only of characters SQS accepts in every implementation is sent as that text;
/// anything else (binary, control characters, characters outside the Basic Multilingual Plane, CR) is sent base64
/// with <c>"b":"64"</c>; an empty body (SQS requires at least one character) is sent as <c>"-"</c> with <c>"b":"0"</c>.</item>
/// </list>
/// A message without the <c>bus</c> attribute (sent by another client) is read as: body = the text's UTF-8 bytes,
/// message id = the SQS message id, headers = its String attributes.
/// </summary>
internal static class SqsEnvelope
{
    /// <summary>The attribute that carries the Bus fields.</summary>
    public const string AttributeName = "bus";

    /// <summary>SQS's limit for body plus attributes (names, types and values), bytes.</summary>
    public const int WireLimit = 262_144;

    /// <summary>What the attribute may take of the wire limit when the declared body maximum is sent base64.</summary>
    public const int AttributeAllowance = 1_024;

    /// <summary>
    /// The largest body of any bytes that always fits: base64 of it plus <see cref="AttributeAllowance"/> is at most
    /// <see cref="WireLimit"/>. 195,840 bytes.
    /// </summary>
    public const int MaxBodySize = (WireLimit - AttributeAllowance) / 4 * 3;

    private const string StringType = "String";

    public static (string Body, string Attribute, bool Base64) Encode(OutgoingMessage message)
    {
        var span = message.Body.Span;
        string body;
        string? encoding = null;
        if (span.IsEmpty)
        {
            body = "-";
            encoding = "0";
        }
        else if (TryText(span, out var text))
        {
            body = text;
        }
        else
        {
            body = Convert.ToBase64String(span);
            encoding = "64";
        }

        return (body, EncodeAttribute(message, encoding), encoding == "64");
    }

    /// <summary>The size SQS counts: body UTF-8 bytes plus the attribute's name, type and value.</summary>
    public static long WireSize(OutgoingMessage message)
    {
        var span = message.Body.Span;
        long body;
        string? encoding = null;
        if (span.IsEmpty)
        {
            body = 1;
            encoding = "0";
        }
        else if (IsText(span))
        {
            body = span.Length;
        }
        else
        {
            body = (span.Length + 2) / 3 * 4L;
            encoding = "64";
        }

        return body + AttributeName.Length + StringType.Length + EncodeAttribute(message, encoding).Length;
    }

    public static MessageAttributeValue Attribute(string value) => new() { DataType = StringType, StringValue = value };

    public static ReceivedMessage Decode(string topic, Message message, long deliveryTag, object? state, int unseenReleases = 0)
    {
        var receiveCount = Attr(message, "ApproximateReceiveCount") is { } count && int.TryParse(count, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : 1;

        // Receives whose message this process released without handing it to the application are not deliveries.
        receiveCount = Math.Max(1, receiveCount - unseenReleases);
        var timestamp = Attr(message, "SentTimestamp") is { } sent && long.TryParse(sent, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms)
            ? DateTimeOffset.FromUnixTimeMilliseconds(ms)
            : DateTimeOffset.UtcNow;
        var position = Attr(message, "SequenceNumber") ?? message.MessageId;
        var text = message.Body ?? "";
        if (message.MessageAttributes is { } attributes && attributes.TryGetValue(AttributeName, out var bus) && bus.StringValue is { } json)
        {
            var fields = ParseAttribute(json);
            ReadOnlyMemory<byte> body = fields.Encoding switch
            {
                "0" => ReadOnlyMemory<byte>.Empty,
                "64" => Convert.FromBase64String(text),
                _ => Encoding.UTF8.GetBytes(text),
            };
            return new ReceivedMessage(topic, body, fields.Key, fields.Headers, fields.Id ?? message.MessageId, fields.CorrelationId, fields.ContentType, fields.ReplyTo, receiveCount, position, timestamp, deliveryTag, state);
        }

        // Sent by another client: its String attributes are the headers.
        Dictionary<string, string>? headers = null;
        if (message.MessageAttributes is { Count: > 0 } raw)
        {
            headers = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var (name, value) in raw)
            {
                if (value.StringValue is { } s)
                {
                    headers[name] = s;
                }
            }
        }

        return new ReceivedMessage(topic, Encoding.UTF8.GetBytes(text), Attr(message, "MessageGroupId"), headers, message.MessageId, null, null, null, receiveCount, position, timestamp, deliveryTag, state);
    }

    private static string? Attr(Message message, string name)
        => message.Attributes is { } attributes && attributes.TryGetValue(name, out var value) ? value : null;

    /// <summary>Whether SQS takes these bytes as a text body unchanged, everywhere (real SQS, LocalStack, fauxqs).</summary>
    internal static bool IsText(ReadOnlySpan<byte> bytes)
    {
        // Printable ASCII, tab and LF are the common case: no decoding needed.
        var i = 0;
        for (; i < bytes.Length; i++)
        {
            var b = bytes[i];
            if (b >= 0x80 || (b < 0x20 && b is not (0x09 or 0x0A)) || b == 0x7F)
            {
                break;
            }
        }

        // Walk the rest rune by rune: a binary body is the common "no", and a throwing decoder would make it cost an
        // exception per message (about 15 % of the CPU in a profile of the end-to-end benchmark).
        var rest = bytes[i..];
        while (!rest.IsEmpty)
        {
            if (Rune.DecodeFromUtf8(rest, out var rune, out var consumed) != OperationStatus.Done || !IsSqsCharacter(rune.Value))
            {
                return false;
            }

            rest = rest[consumed..];
        }

        return true;
    }

    private static bool TryText(ReadOnlySpan<byte> bytes, out string text)
    {
        if (!IsText(bytes))
        {
            text = "";
            return false;
        }

        text = Encoding.UTF8.GetString(bytes);
        return true;
    }

    /// <summary>
    /// XML 1.0 characters SQS allows, minus CR (line endings could be normalised) and everything outside the Basic
    /// Multilingual Plane (fauxqs rejects it; real SQS accepts it).
    /// </summary>
    private static bool IsSqsCharacter(int c)
        => c is '\t' or '\n' || (c >= 0x20 && c < 0x7F) || (c > 0x9F && c <= 0xD7FF) || (c >= 0xE000 && c <= 0xFFFD);

    private static string EncodeAttribute(OutgoingMessage message, string? encoding)
    {
        var buffer = new ArrayBufferWriter<byte>(128);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("id", MessageIdEncoding.GetUtf8(message));
            WriteIfSet(writer, "k", message.Key);
            WriteIfSet(writer, "c", message.CorrelationId);
            WriteIfSet(writer, "t", message.ContentType);
            WriteIfSet(writer, "r", message.ReplyTo);
            WriteIfSet(writer, "b", encoding);
            if (message.HasHeaders)
            {
                writer.WriteStartObject("h");
                foreach (var (name, value) in message.Headers)
                {
                    writer.WriteString(name, value);
                }

                writer.WriteEndObject();
            }

            writer.WriteEndObject();
        }

        // The default encoder escapes everything outside printable ASCII: the attribute is pure ASCII.
        return Encoding.ASCII.GetString(buffer.WrittenSpan);
    }

    private static void WriteIfSet(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is not null)
        {
            writer.WriteString(name, value);
        }
    }

    internal readonly record struct Fields(string? Id, string? Key, string? CorrelationId, string? ContentType, string? ReplyTo, string? Encoding, Dictionary<string, string>? Headers);

    internal static Fields ParseAttribute(string json)
    {
        string? id = null, key = null, correlation = null, contentType = null, replyTo = null, encoding = null;
        Dictionary<string, string>? headers = null;
        var bytes = Encoding.UTF8.GetBytes(json);
        var reader = new Utf8JsonReader(bytes);
        reader.Read();
        while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
        {
            var name = reader.GetString();
            reader.Read();
            if (name == "h" && reader.TokenType == JsonTokenType.StartObject)
            {
                headers = new Dictionary<string, string>(StringComparer.Ordinal);
                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var header = reader.GetString()!;
                    reader.Read();
                    headers[header] = HeaderValue(ref reader, bytes);
                }

                continue;
            }

            if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
            {
                reader.Skip();
                continue;
            }

            var value = reader.TokenType == JsonTokenType.String ? reader.GetString() : null;
            switch (name)
            {
                case "id": id = value; break;
                case "k": key = value; break;
                case "c": correlation = value; break;
                case "t": contentType = value; break;
                case "r": replyTo = value; break;
                case "b": encoding = value; break;
                default: break;
            }
        }

        return new Fields(id, key, correlation, contentType, replyTo, encoding, headers);
    }

    /// <summary>
    /// A header's value: a string as it is; anything else another client may have written (a number, true, an object)
    /// as its JSON text, so that one such message cannot make its batch unreadable.
    /// </summary>
    private static string HeaderValue(ref Utf8JsonReader reader, byte[] json)
    {
        switch (reader.TokenType)
        {
            case JsonTokenType.String:
                return reader.GetString() ?? "";
            case JsonTokenType.Null:
                return "";
            case JsonTokenType.StartObject or JsonTokenType.StartArray:
                var start = (int)reader.TokenStartIndex;
                reader.Skip();
                return Encoding.UTF8.GetString(json, start, (int)reader.BytesConsumed - start);
            default:
                return Encoding.UTF8.GetString(reader.ValueSpan);
        }
    }
}
