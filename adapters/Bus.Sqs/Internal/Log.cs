using Microsoft.Extensions.Logging;

namespace Bus.Sqs.Internal;

/// <summary>The SQS adapter's log messages: event ids 5000–5999. No template carries a URI or a credential.</summary>
internal static partial class Log
{
    [LoggerMessage(5001, LogLevel.Debug, "sqs: connected to {Endpoint}")]
    public static partial void Connected(ILogger logger, string endpoint);

    [LoggerMessage(5002, LogLevel.Information, "sqs: created queue {Queue} for topic {Topic} (group {Group}); waiting {WaitMs} ms so that every publisher's group list includes it")]
    public static partial void QueueCreated(ILogger logger, string queue, string topic, string group, long waitMs);

    [LoggerMessage(5003, LogLevel.Debug, "sqs: topic {Topic} has {Count} group queues")]
    public static partial void GroupsListed(ILogger logger, string topic, int count);

    [LoggerMessage(5004, LogLevel.Debug, "sqs: message {MessageId} published to topic {Topic}, which has no group yet: nobody receives it")]
    public static partial void NoGroups(ILogger logger, string messageId, string topic);

    [LoggerMessage(5005, LogLevel.Information, "sqs: group queue {Queue} of topic {Topic} no longer exists; it is dropped from the topic's groups")]
    public static partial void GroupQueueGone(ILogger logger, string queue, string topic);

    [LoggerMessage(5010, LogLevel.Warning, "sqs: receiving from {Queue} failed; retrying in {DelayMs} ms")]
    public static partial void ReceiveFailed(ILogger logger, string queue, long delayMs, Exception exception);

    [LoggerMessage(5016, LogLevel.Warning, "sqs: a receive from {Queue} was not answered {WaitMs} ms past its long poll; closing cancels it (messages it may have taken come back after their visibility timeout)")]
    public static partial void ReceiveAbandoned(ILogger logger, string queue, long waitMs);

    [LoggerMessage(5011, LogLevel.Debug, "sqs: released {Count} unsettled messages of {Queue} for redelivery")]
    public static partial void Released(ILogger logger, int count, string queue);

    [LoggerMessage(5012, LogLevel.Warning, "sqs: releasing {Count} unsettled messages of {Queue} failed; they come back after their visibility timeout")]
    public static partial void ReleaseFailed(ILogger logger, int count, string queue, Exception exception);

    [LoggerMessage(5013, LogLevel.Debug, "sqs: settling a message of {Queue} failed because SQS no longer knows its receipt handle ({Code}); ignored")]
    public static partial void StaleReceipt(ILogger logger, string queue, string code);

    [LoggerMessage(5014, LogLevel.Warning, "sqs: deleting {Count} acknowledged messages of {Queue} failed; they come back after their visibility timeout")]
    public static partial void DeleteFailed(ILogger logger, int count, string queue, Exception exception);

    [LoggerMessage(5015, LogLevel.Warning, "sqs: deleting an acknowledged message of {Queue} failed ({Code}: {Reason}); it comes back after its visibility timeout")]
    public static partial void DeleteEntryFailed(ILogger logger, string queue, string code, string reason);

    [LoggerMessage(5020, LogLevel.Warning, "sqs: cannot set the native redrive policy of {Queue}: dead-letter queue {DeadLetterQueue} is not the same kind (standard/FIFO); core dead-lettering still applies")]
    public static partial void RedriveKindMismatch(ILogger logger, string queue, string deadLetterQueue);
}
