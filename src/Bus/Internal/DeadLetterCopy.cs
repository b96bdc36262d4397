using System.Globalization;

namespace Bus.Internal;

/// <summary>Builds the message stored on a dead-letter topic: the original plus why and when.</summary>
internal static class DeadLetterCopy
{
    public static OutgoingMessage Create(ReceivedMessage message, string group, string reason, string? description)
    {
        var copy = CopyOf(message, keepDeadLetterHeaders: true);
        copy.Headers[DeadLetterHeaders.OriginalTopic] = message.Headers.TryGetValue(DeadLetterHeaders.OriginalTopic, out var original) ? original : message.Topic;
        copy.Headers[DeadLetterHeaders.Group] = group;
        copy.Headers[DeadLetterHeaders.Reason] = reason;
        copy.Headers[DeadLetterHeaders.DeliveryCount] = message.DeliveryCount.ToString(CultureInfo.InvariantCulture);
        copy.Headers[DeadLetterHeaders.Time] = DateTimeOffset.UtcNow.ToString("O", CultureInfo.InvariantCulture);
        copy.Headers[DeadLetterHeaders.OriginalPosition] = message.Position;
        if (description is not null)
        {
            // Stack traces can be long; brokers limit header sizes (RabbitMQ frames, SQS attributes).
            copy.Headers[DeadLetterHeaders.Description] = description.Length <= 2048 ? description : description[..2048];
        }
        else
        {
            copy.Headers.Remove(DeadLetterHeaders.Description);
        }

        return copy;
    }

    /// <summary>The message to publish again on redrive: the dead-letter copy without the dead-letter headers.</summary>
    public static OutgoingMessage ForRedrive(ReceivedMessage deadLetter) => CopyOf(deadLetter, keepDeadLetterHeaders: false);

    private static OutgoingMessage CopyOf(ReceivedMessage message, bool keepDeadLetterHeaders)
    {
        var copy = new OutgoingMessage(message.Body)
        {
            Key = message.Key,
            MessageId = message.MessageId,
            CorrelationId = message.CorrelationId,
            ContentType = message.ContentType,
            ReplyTo = message.ReplyTo,
        };

        foreach (var (name, value) in message.Headers)
        {
            // A reserved name reaches a received message only from another producer, where the backend does not read
            // it as one of the message's fields; publishing it is refused, so a copy leaves it out rather than fail.
            if (ReservedHeaders.IsReserved(name))
            {
                continue;
            }

            if (keepDeadLetterHeaders || !DeadLetterHeaders.IsDeadLetterHeader(name))
            {
                copy.Headers[name] = value;
            }
        }

        return copy;
    }
}
