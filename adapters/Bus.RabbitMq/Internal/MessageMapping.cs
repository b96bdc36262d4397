using System.Globalization;
using System.Text;
using Bus.Transport;
using RabbitMQ.Client;

namespace Bus.RabbitMq.Internal;

/// <summary>
/// Maps Bus messages onto AMQP 0-9-1 properties and back. Message id, correlation id, content type and reply-to use
/// the AMQP properties (short strings, at most 255 bytes; longer values travel in <c>bus-*</c> headers instead); the
/// key travels in the <c>bus-key</c> header; application headers are UTF-8 long strings.
/// </summary>
internal static class MessageMapping
{
    public const string KeyHeader = "bus-key";
    public const string MessageIdHeader = "bus-message-id";
    public const string CorrelationIdHeader = "bus-correlation-id";
    public const string ContentTypeHeader = "bus-content-type";
    public const string ReplyToHeader = "bus-reply-to";
    public const string DeliveryCountHeader = "x-delivery-count";

    private const int ShortStringLimit = 255;

    /// <summary>
    /// Headers the broker (or RabbitMQ.Client's confirmation tracking, <c>x-dotnet-pub-seq-no</c>) adds, never shown as
    /// application headers.
    /// </summary>
    private static readonly HashSet<string> BrokerHeaders = new(StringComparer.Ordinal)
    {
        DeliveryCountHeader, "x-death", "x-first-death-exchange", "x-first-death-queue", "x-first-death-reason",
        "x-last-death-exchange", "x-last-death-queue", "x-last-death-reason", "x-stream-offset", Constants.PublishSequenceNumberHeader,
    };

    public static BasicProperties ToProperties(OutgoingMessage message)
    {
        // Only messages with headers, a key or an over-long property carry a header table.
        Dictionary<string, object?>? headers = null;
        if (message.HasHeaders)
        {
            headers = new Dictionary<string, object?>(StringComparer.Ordinal);
            foreach (var (name, value) in message.Headers)
            {
                if (BrokerHeaders.Contains(name))
                {
                    // Never shown on receipt, and read there as the broker's: an application's x-first-death-reason
                    // made an ordinary message arrive as one the broker had dead-lettered.
                    continue;
                }

                headers[name] = Encoding.UTF8.GetBytes(value);
            }
        }

        if (message.Key is { } key)
        {
            (headers ??= new Dictionary<string, object?>(StringComparer.Ordinal))[KeyHeader] = Encoding.UTF8.GetBytes(key);
        }

        var properties = new BasicProperties
        {
            DeliveryMode = DeliveryModes.Persistent,
            Timestamp = new AmqpTimestamp(DateTimeOffset.UtcNow.ToUnixTimeSeconds()),
            MessageId = Short(message.MessageId, MessageIdHeader, ref headers),
            CorrelationId = Short(message.CorrelationId, CorrelationIdHeader, ref headers),
            ContentType = Short(message.ContentType, ContentTypeHeader, ref headers),
            ReplyTo = Short(message.ReplyTo, ReplyToHeader, ref headers),
            Headers = headers,
        };

        return properties;
    }

    /// <summary>The routing key: the message key when it fits a short string (fanout exchanges ignore it; it helps tracing).</summary>
    public static string RoutingKey(OutgoingMessage message)
        => message.Key is { } key && Encoding.UTF8.GetByteCount(key) <= ShortStringLimit ? key : "";

    /// <summary>
    /// The received message of a delivery. Its count is the queue's (x-delivery-count, quorum queues) where there is
    /// one; a redelivery without it (a classic queue only flags it), or with 0 (a return that was not a failure, from
    /// RabbitMQ 4.3), is counted in <paramref name="redeliveries"/> by message id, which makes it exact within the bus
    /// (2, 3, ...) where it used to stay 2, so a message nacked by a pull consumer never reached MaxDeliveries above 2.
    /// A first delivery is 1 and is not counted there, to keep the common path free. A message without a message id
    /// (from another publisher) is not counted: its redeliveries count 2.
    /// </summary>
    public static ReceivedMessage FromDelivery(string topic, ReadOnlyMemory<byte> body, IReadOnlyBasicProperties properties, ulong deliveryTag, bool redelivered, DeliveryCounts<string>.Scope redeliveries, object state)
    {
        var counted = false;
        var raw = properties.Headers;
        Dictionary<string, string>? headers = null;
        string? key = null, messageId = null, correlationId = null, contentType = null, replyTo = null;
        var deliveryCount = redelivered ? 2 : 1;
        if (raw is not null)
        {
            foreach (var (name, value) in raw)
            {
                switch (name)
                {
                    case KeyHeader: key = Text(value); continue;
                    case MessageIdHeader: messageId = Text(value); continue;
                    case CorrelationIdHeader: correlationId = Text(value); continue;
                    case ContentTypeHeader: contentType = Text(value); continue;
                    case ReplyToHeader: replyTo = Text(value); continue;
                    case DeliveryCountHeader:
                        // Quorum queues count returns; classic queues only flag a redelivery.
                        if (TryInteger(value, out var returned) && returned > 0)
                        {
                            deliveryCount = (int)Math.Min(int.MaxValue - 1, returned) + 1;
                            counted = true;
                        }

                        continue;
                }

                if (!BrokerHeaders.Contains(name))
                {
                    (headers ??= new Dictionary<string, string>(StringComparer.Ordinal))[name] = Text(value) ?? "";
                }
            }

            AddBrokerDeadLetterHeaders(raw, ref headers);
        }

        messageId ??= properties.MessageId;
        if (redelivered && !counted && messageId is not null)
        {
            deliveryCount = redeliveries.Next(messageId, whenUnknown: 2);
        }

        messageId ??= Guid.CreateVersion7().ToString();

        var timestamp = properties.IsTimestampPresent()
            ? DateTimeOffset.FromUnixTimeSeconds(properties.Timestamp.UnixTime)
            : DateTimeOffset.UtcNow;
        return new ReceivedMessage(
            topic,
            body.ToArray(),
            key,
            headers,
            messageId,
            correlationId ?? properties.CorrelationId,
            contentType ?? properties.ContentType,
            replyTo ?? properties.ReplyTo,
            deliveryCount,
            deliveryTag.ToString(CultureInfo.InvariantCulture),
            timestamp,
            (long)deliveryTag,
            state);
    }

    /// <summary>
    /// A message the broker dead-lettered itself (its delivery limit was reached, say by consumers that kept crashing)
    /// has no Bus dead-letter headers: derive them from the broker's x-first-death-* headers.
    /// </summary>
    private static void AddBrokerDeadLetterHeaders(IDictionary<string, object?> raw, ref Dictionary<string, string>? headers)
    {
        if (!raw.TryGetValue("x-first-death-reason", out var reasonValue) || Text(reasonValue) is not { } reason || reason == "expired"
            || headers?.ContainsKey(DeadLetterHeaders.Reason) == true)
        {
            return;
        }

        headers ??= new Dictionary<string, string>(StringComparer.Ordinal);
        headers[DeadLetterHeaders.Reason] = $"dead-lettered by RabbitMQ: {reason}";
        if (raw.TryGetValue("x-first-death-exchange", out var exchange) && Text(exchange) is { } topic)
        {
            headers[DeadLetterHeaders.OriginalTopic] = topic;
        }

        if (raw.TryGetValue("x-first-death-queue", out var queue) && Text(queue) is { } queueName && queueName.IndexOf(':', StringComparison.Ordinal) is var colon and > 0)
        {
            headers[DeadLetterHeaders.Group] = queueName[(colon + 1)..];
        }

        headers[DeadLetterHeaders.Time] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
    }

    private static string? Short(string? value, string header, ref Dictionary<string, object?>? headers)
    {
        // Three UTF-8 bytes per UTF-16 unit at most: most values fit without being counted.
        if (value is null || value.Length * 3 <= ShortStringLimit || Encoding.UTF8.GetByteCount(value) <= ShortStringLimit)
        {
            return value;
        }

        (headers ??= new Dictionary<string, object?>(StringComparer.Ordinal))[header] = Encoding.UTF8.GetBytes(value);
        return null;
    }

    private static string? Text(object? value) => value switch
    {
        null => null,
        byte[] bytes => Encoding.UTF8.GetString(bytes),
        string text => text,
        AmqpTimestamp stamp => stamp.UnixTime.ToString(CultureInfo.InvariantCulture),
        IFormattable formattable => formattable.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString(),
    };

    private static bool TryInteger(object? value, out long result)
    {
        switch (value)
        {
            case long l: result = l; return true;
            case int i: result = i; return true;
            case short s: result = s; return true;
            case byte b: result = b; return true;
            case uint u: result = u; return true;
            default: result = 0; return false;
        }
    }

    /// <summary>
    /// Why AMQP 0-9-1 cannot carry <paramref name="message"/>'s properties, or null: header names are short strings (at
    /// most 255 bytes), and the content header (properties and header table) travels in one frame of at most
    /// <paramref name="frameMax"/> bytes. The broker closes the whole connection over a larger frame (501 FRAME_ERROR),
    /// with every channel on it.
    /// </summary>
    public static string? ExplainUnsendable(OutgoingMessage message, uint frameMax)
    {
        // The fixed properties (ids, content type, reply-to, timestamp…) take at most about 1.3 KiB; the rest of the
        // frame is the header table's. A quick bound first: most messages are far from either limit.
        const int FrameOverhead = 8 + 1400;
        var budget = (long)frameMax - FrameOverhead;
        long quick = 0;
        if (message.HasHeaders)
        {
            foreach (var (name, value) in message.Headers)
            {
                if (name.Length * 3 > ShortStringLimit && Encoding.UTF8.GetByteCount(name) > ShortStringLimit)
                {
                    return $"header name '{name[..Math.Min(name.Length, 40)]}…' is {Encoding.UTF8.GetByteCount(name)} bytes in UTF-8; AMQP allows at most {ShortStringLimit}";
                }

                quick += 6 + (3L * (name.Length + value.Length));
            }
        }

        quick += LongProperty(message.Key) + LongProperty(message.MessageId) + LongProperty(message.CorrelationId) + LongProperty(message.ContentType) + LongProperty(message.ReplyTo);
        if (quick <= budget)
        {
            return null;
        }

        var table = message.Key is null ? 0 : 6 + KeyHeader.Length + (long)Encoding.UTF8.GetByteCount(message.Key);
        if (message.HasHeaders)
        {
            foreach (var (name, value) in message.Headers)
            {
                table += 6 + Encoding.UTF8.GetByteCount(name) + (long)Encoding.UTF8.GetByteCount(value);
            }
        }

        foreach (var value in new[] { message.MessageId, message.CorrelationId, message.ContentType, message.ReplyTo })
        {
            if (value is not null && Encoding.UTF8.GetByteCount(value) > ShortStringLimit)
            {
                table += 6 + 20 + Encoding.UTF8.GetByteCount(value); // goes in a bus-* header
            }
        }

        return table <= budget
            ? null
            : $"its key, headers and over-long properties take {table} bytes, and AMQP sends them in one frame of at most {frameMax} bytes (the connection's frame_max; the broker would close the connection)";

        static long LongProperty(string? value) => value is null ? 0 : 26 + (3L * value.Length);
    }
}
