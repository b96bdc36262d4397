using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using Bus.Transport;
using Confluent.Kafka;

namespace Bus.Kafka.Internal;

/// <summary>
/// Maps Bus messages onto Kafka records: the key is the UTF-8 key (so the murmur2 partitioner places it where Java
/// clients do), the value is the body, and the fields Kafka lacks travel as headers with reserved names.
/// </summary>
internal static class KafkaMessages
{
    /// <summary>Header carrying <see cref="OutgoingMessage.MessageId"/>.</summary>
    public const string MessageIdHeader = "bus-message-id";

    /// <summary>Header carrying <see cref="OutgoingMessage.CorrelationId"/>.</summary>
    public const string CorrelationIdHeader = "bus-correlation-id";

    /// <summary>Header carrying <see cref="OutgoingMessage.ContentType"/>.</summary>
    public const string ContentTypeHeader = "bus-content-type";

    /// <summary>Header carrying <see cref="OutgoingMessage.ReplyTo"/>.</summary>
    public const string ReplyToHeader = "bus-reply-to";

    /// <summary>Bytes the reserved header names add to a message, for the size check.</summary>
    public static long ReservedOverhead(OutgoingMessage message)
        => MessageIdHeader.Length
            + (message.CorrelationId is null ? 0 : CorrelationIdHeader.Length)
            + (message.ContentType is null ? 0 : ContentTypeHeader.Length)
            + (message.ReplyTo is null ? 0 : ReplyToHeader.Length);

    /// <summary>The Kafka record for <paramref name="message"/>.</summary>
    public static Message<byte[]?, byte[]> ToRecord(OutgoingMessage message)
    {
        var headers = new Headers
        {
            { MessageIdHeader, MessageIdEncoding.GetUtf8(message) },
        };
        if (message.CorrelationId is { } correlationId)
        {
            headers.Add(CorrelationIdHeader, Encoding.UTF8.GetBytes(correlationId));
        }

        if (message.ContentType is { } contentType)
        {
            headers.Add(ContentTypeHeader, Encoding.UTF8.GetBytes(contentType));
        }

        if (message.ReplyTo is { } replyTo)
        {
            headers.Add(ReplyToHeader, Encoding.UTF8.GetBytes(replyTo));
        }

        if (message.HasHeaders)
        {
            // Core refuses application headers with the reserved names before a message reaches the transport.
            foreach (var (name, value) in message.Headers)
            {
                headers.Add(name, Encoding.UTF8.GetBytes(value));
            }
        }

        return new Message<byte[]?, byte[]>
        {
            Key = message.Key is null ? null : Encoding.UTF8.GetBytes(message.Key),
            // Produce copies the value into librdkafka before it returns: a body that is a whole array is passed as is.
            Value = MemoryMarshal.TryGetArray(message.Body, out var body) && body.Offset == 0 && body.Count == body.Array!.Length ? body.Array : message.Body.ToArray(),
            Headers = headers,
        };
    }

    /// <summary>The Bus view of a consumed record; <paramref name="key"/> is its key already decoded (the record decodes it once for per-key order).</summary>
    public static ReceivedMessage ToReceived(string topic, ConsumeResult<byte[]?, byte[]?> record, string? key, int deliveryCount, DeliveryHandle handle)
    {
        string? messageId = null, correlationId = null, contentType = null, replyTo = null;
        Dictionary<string, string>? headers = null;
        if (record.Message.Headers is { } kafkaHeaders)
        {
            foreach (var header in kafkaHeaders)
            {
                var bytes = header.GetValueBytes();
                var value = bytes is null ? "" : Encoding.UTF8.GetString(bytes);
                switch (header.Key)
                {
                    case MessageIdHeader: messageId = value; break;
                    case CorrelationIdHeader: correlationId = value; break;
                    case ContentTypeHeader: contentType = value; break;
                    case ReplyToHeader: replyTo = value; break;
                    default:
                        (headers ??= new Dictionary<string, string>(StringComparer.Ordinal))[header.Key] = value;
                        break;
                }
            }
        }

        var body = record.Message.Value ?? [];
        var timestamp = record.Message.Timestamp.UnixTimestampMs > 0 ? DateTimeOffset.FromUnixTimeMilliseconds(record.Message.Timestamp.UnixTimestampMs) : DateTimeOffset.UtcNow;
        if (messageId is null)
        {
            // A record from a non-Bus producer has no id: its position identifies it within the topic, so the
            // position's text is needed now, as both.
            var position = handle.FormatPosition();
            return new ReceivedMessage(topic, body, key, headers, position, correlationId, contentType, replyTo, deliveryCount, position, timestamp, record.Offset.Value, handle);
        }

        // The position becomes text only when read.
        return new ReceivedMessage(topic, body, key, headers, messageId, correlationId, contentType, replyTo, deliveryCount, handle, timestamp, record.Offset.Value);
    }

    /// <summary>A position: <c>partition:offset</c>.</summary>
    public static string Position(int partition, long offset) => string.Create(CultureInfo.InvariantCulture, $"{partition}:{offset}");

    /// <summary>
    /// Parses <c>partition:offset[,partition:offset…]</c>. Returns <see langword="null"/> when the text is not one.
    /// </summary>
    public static Dictionary<int, long>? ParsePositions(string text)
    {
        var result = new Dictionary<int, long>();
        foreach (var part in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var colon = part.IndexOf(':');
            if (colon <= 0
                || !int.TryParse(part[..colon], NumberStyles.None, CultureInfo.InvariantCulture, out var partition)
                || !long.TryParse(part[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
            {
                return null;
            }

            result[partition] = offset;
        }

        return result.Count == 0 ? null : result;
    }
}
