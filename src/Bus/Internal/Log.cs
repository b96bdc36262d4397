using Microsoft.Extensions.Logging;

namespace Bus.Internal;

/// <summary>Core log messages. Event ids 1000–1999 belong to core; adapters use their own ranges.</summary>
internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Information, "Bus connected to {Backend} at {Url}")]
    public static partial void Connected(ILogger logger, string backend, string url);

    [LoggerMessage(1002, LogLevel.Warning, "Bus could not connect to {Backend} at {Url}")]
    public static partial void ConnectFailed(ILogger logger, string backend, string url, Exception exception);

    [LoggerMessage(1010, LogLevel.Warning, "{Backend}: message {MessageId} on topic {Topic} (group {Group}) dead-lettered to {DeadLetterTopic} after {DeliveryCount} deliveries: {Reason}")]
    public static partial void DeadLettered(ILogger logger, string backend, string topic, string group, string messageId, int deliveryCount, string deadLetterTopic, string reason);

    [LoggerMessage(1011, LogLevel.Error, "{Backend}: dead-lettering message {MessageId} on topic {Topic} (group {Group}) failed; the backend will redeliver it")]
    public static partial void DeadLetterFailed(ILogger logger, string backend, string topic, string group, string messageId, Exception exception);

    [LoggerMessage(1012, LogLevel.Debug, "{Backend}: settlement of message {MessageId} on topic {Topic} (group {Group}) after the consumer closed was ignored; it was released for redelivery")]
    public static partial void SettledAfterDispose(ILogger logger, string backend, string topic, string group, string messageId);

    [LoggerMessage(1013, LogLevel.Warning, "{Backend}: closing the receiver for topic {Topic} (group {Group}) failed")]
    public static partial void ReceiverDisposeFailed(ILogger logger, string backend, string topic, string group, Exception exception);

    [LoggerMessage(1020, LogLevel.Warning, "Handler for topic {Topic} (group {Group}) gave up on message {MessageId} after {DeliveryCount} deliveries")]
    public static partial void HandlerGaveUp(ILogger logger, string topic, string group, string messageId, int deliveryCount, Exception exception);

    [LoggerMessage(1021, LogLevel.Error, "Handler for topic {Topic} (group {Group}) failed after message {MessageId} was settled, or its settlement failed")]
    public static partial void HandlerFailedAfterSettlement(ILogger logger, string topic, string group, string messageId, Exception exception);

    [LoggerMessage(1022, LogLevel.Information, "Retries of message {MessageId} on topic {Topic} (group {Group}) stopped by shutdown; it is released for redelivery")]
    public static partial void RetryInterruptedByShutdown(ILogger logger, string topic, string group, string messageId);

    [LoggerMessage(1023, LogLevel.Error, "Subscription to topic {Topic} (group {Group}) stopped")]
    public static partial void SubscriptionFailed(ILogger logger, string topic, string group, Exception exception);

    [LoggerMessage(1024, LogLevel.Warning, "Handlers for topic {Topic} (group {Group}) still running after {Timeout}; cancelling them")]
    public static partial void ShutdownTimedOut(ILogger logger, string topic, string group, TimeSpan timeout);

    [LoggerMessage(1040, LogLevel.Error, "Subscription to topic {Topic} (group {Group}): {Count} handler(s) did not end within {Grace} after their cancellation token fired; disposal gave up on them and their messages go back to the group")]
    public static partial void HandlersAbandoned(ILogger logger, string topic, string group, int count, TimeSpan grace);

    [LoggerMessage(1041, LogLevel.Warning, "Subscription to topic {Topic} (group {Group}): a handler that disposal gave up on ended; message {MessageId} was not settled by it (it went back to the group)")]
    public static partial void AbandonedHandlerEnded(ILogger logger, string topic, string group, string messageId);

    [LoggerMessage(1031, LogLevel.Warning, "Deleting the reply topic {Topic} of the {Backend} bus failed; it stays on the broker")]
    public static partial void ReplyTopicNotDeleted(ILogger logger, string topic, string backend, Exception exception);

    [LoggerMessage(1032, LogLevel.Warning, "Disposing the {Backend} bus: {Count} publishes still under way after {Seconds} s; closing the connection under them (they fail)")]
    public static partial void PublishesOutlivedDispose(ILogger logger, string backend, int count, double seconds);

    [LoggerMessage(1030, LogLevel.Information, "Redrove {Count} messages from {DeadLetterTopic} to their topics")]
    public static partial void Redriven(ILogger logger, int count, string deadLetterTopic);

    [LoggerMessage(1033, LogLevel.Warning, "Closing a {Backend} consumer whose join had been given up on (it opened late) failed; it may hold its share of the group until the process ends")]
    public static partial void AbandonedReceiverCloseFailed(ILogger logger, string backend, Exception exception);

    [LoggerMessage(1034, LogLevel.Warning, "Acknowledging a reply on {Topic} ({Backend}) failed; the reply reached its request, and if it is delivered again it finds nobody waiting")]
    public static partial void ReplyAckFailed(ILogger logger, string backend, string topic, Exception exception);

    [LoggerMessage(1035, LogLevel.Warning, "The reply listener on {Topic} ({Backend}) stopped; requests waiting for a reply fail, and the next request starts it again")]
    public static partial void ReplyListenerFailed(ILogger logger, string backend, string topic, Exception exception);

    [LoggerMessage(1036, LogLevel.Warning, "A trace listener threw when the process span of a message on {Topic} (group {Group}) started; the message is handled without a span")]
    public static partial void TracingFailed(ILogger logger, string topic, string group, Exception exception);
}
