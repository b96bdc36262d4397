namespace Bus;

/// <summary>
/// Headers the bus adds to a dead-letter copy. The copy keeps the original body, key, headers, message id,
/// correlation id and content type.
/// </summary>
public static class DeadLetterHeaders
{
    /// <summary>The topic the message was dead-lettered from.</summary>
    public const string OriginalTopic = "bus-dlq-original-topic";

    /// <summary>The group that gave up on the message.</summary>
    public const string Group = "bus-dlq-group";

    /// <summary>Why: the exception type and message, or the reason given to <see cref="ReceivedMessage.DeadLetterAsync"/>.</summary>
    public const string Reason = "bus-dlq-reason";

    /// <summary>Optional detail (the exception's stack trace, or the description given).</summary>
    public const string Description = "bus-dlq-description";

    /// <summary>Deliveries made before the message was dead-lettered.</summary>
    public const string DeliveryCount = "bus-dlq-delivery-count";

    /// <summary>When it was dead-lettered, ISO 8601 UTC.</summary>
    public const string Time = "bus-dlq-time";

    /// <summary>The original message's position.</summary>
    public const string OriginalPosition = "bus-dlq-original-position";

    /// <summary>Whether <paramref name="name"/> is one of these headers (and so is removed on redrive).</summary>
    /// <param name="name">A header name.</param>
    public static bool IsDeadLetterHeader(string name) => name.StartsWith("bus-dlq-", StringComparison.Ordinal);
}
