namespace Bus;

/// <summary>Names and values the bus uses by convention.</summary>
public static class BusDefaults
{
    /// <summary>
    /// The group that exists on every dead-letter topic from the moment the topic is ensured, so it sees every
    /// dead-lettered message. Consume a dead-letter topic with this group; <see cref="IMessageBus.RedriveAsync"/> uses it.
    /// </summary>
    public const string DeadLetterGroup = "dlq";

    /// <summary>The header that carries W3C trace context across the bus.</summary>
    public const string TraceParentHeader = "traceparent";
}
