using Microsoft.Extensions.Logging;

namespace Bus.Kafka.Internal;

/// <summary>The Kafka adapter's log messages: event ids 4000–4999. No template carries a URI or a credential.</summary>
internal static partial class Log
{
    [LoggerMessage(4001, LogLevel.Debug, "kafka: librdkafka {Client} [{Facility}] {Message}")]
    public static partial void ClientLog(ILogger logger, string client, string facility, string message);

    [LoggerMessage(4014, LogLevel.Warning, "kafka: librdkafka {Client} [{Facility}] {Message}")]
    public static partial void ClientWarning(ILogger logger, string client, string facility, string message);

    /// <summary>librdkafka's own log lines: warnings and worse as warnings, the rest as debug.</summary>
    public static void Client(ILogger logger, string client, Confluent.Kafka.LogMessage message)
    {
        if (message.Level <= Confluent.Kafka.SyslogLevel.Warning)
        {
            ClientWarning(logger, client, message.Facility, message.Message);
        }
        else
        {
            ClientLog(logger, client, message.Facility, message.Message);
        }
    }

    [LoggerMessage(4002, LogLevel.Warning, "kafka: librdkafka {Client} reports {Code}: {Reason}")]
    public static partial void ClientError(ILogger logger, string client, string code, string reason);

    [LoggerMessage(4003, LogLevel.Warning, "kafka: the cluster did not answer CreateTopics for topic {Topic} within {TimeoutMs} ms ({Error}); relying on broker auto-creation from now on (the librdkafka mock cluster, for one, does not implement CreateTopics)")]
    public static partial void CreateTopicsUnavailable(ILogger logger, string topic, int timeoutMs, string error);

    [LoggerMessage(4004, LogLevel.Warning, "kafka: topic {Topic} has {Actual} partitions but {Requested} were requested; it was auto-created by the broker because CreateTopics is unavailable, so its partition count could not be chosen")]
    public static partial void PartitionCountNotChosen(ILogger logger, string topic, int actual, int requested);

    [LoggerMessage(4005, LogLevel.Information, "kafka: created topic {Topic} with {Partitions} partitions")]
    public static partial void TopicCreated(ILogger logger, string topic, int partitions);

    [LoggerMessage(4006, LogLevel.Debug, "kafka: group {Group} assigned {Topic} partitions {Partitions}")]
    public static partial void Assigned(ILogger logger, string group, string topic, string partitions);

    [LoggerMessage(4007, LogLevel.Debug, "kafka: group {Group} revoked {Topic} partitions {Partitions}; {Dropped} buffered messages dropped, unacknowledged ones left uncommitted for the next owner")]
    public static partial void Revoked(ILogger logger, string group, string topic, string partitions, int dropped);

    [LoggerMessage(4008, LogLevel.Warning, "kafka: committing offsets of group {Group} on topic {Topic} failed; the messages after the last commit will be delivered again")]
    public static partial void CommitFailed(ILogger logger, string group, string topic, Exception exception);

    [LoggerMessage(4009, LogLevel.Error, "kafka: the consumer of group {Group} on topic {Topic} failed")]
    public static partial void ReceiverFailed(ILogger logger, string group, string topic, Exception exception);

    [LoggerMessage(4010, LogLevel.Debug, "kafka: new group {Group} starts topic {Topic} partition {Partition} at offset {Offset} ({Start})")]
    public static partial void StartResolved(ILogger logger, string group, string topic, int partition, long offset, string start);

    [LoggerMessage(4011, LogLevel.Debug, "kafka: consumer of group {Group} on topic {Topic} {Action} fetching ({Buffered} buffered)")]
    public static partial void FlowControl(ILogger logger, string group, string topic, string action, int buffered);

    [LoggerMessage(4012, LogLevel.Warning, "kafka: group {Group} lost {Topic} partitions {Partitions} (session expired); their unacknowledged messages go to the next owner")]
    public static partial void Lost(ILogger logger, string group, string topic, string partitions);

    [LoggerMessage(4013, LogLevel.Debug, "kafka: topic {Topic} exists with {Partitions} partitions")]
    public static partial void TopicExists(ILogger logger, string topic, int partitions);

    [LoggerMessage(4015, LogLevel.Warning, "kafka: storing offset {Offset} of group {Group} on topic {Topic} partition {Partition} failed; the messages after the last commit will be delivered again")]
    public static partial void StoreFailed(ILogger logger, string group, string topic, int partition, long offset, Exception exception);

    [LoggerMessage(4016, LogLevel.Warning, "kafka: the consumer of group {Group} on topic {Topic} did not close within {Seconds:0.#} s (it was {Step}); it goes on closing in the background, and its unsettled messages go to the group's other members when its session ends at the latest")]
    public static partial void CloseTimedOut(ILogger logger, string group, string topic, double seconds, string step);

    [LoggerMessage(4017, LogLevel.Information, "kafka: topic {Topic} is not deleted: the cluster does not answer admin requests (CreateTopics timed out earlier); it stays on the broker")]
    public static partial void TopicNotDeleted(ILogger logger, string topic);

    [LoggerMessage(4019, LogLevel.Debug, "kafka: group {Group} revoking {Topic} partitions waited {Milliseconds:0} ms for the messages handed out from them to be settled")]
    public static partial void RevocationWaited(ILogger logger, string group, string topic, double milliseconds);

    [LoggerMessage(4020, LogLevel.Information, "kafka: group {Group} revoking {Topic} partitions waited {Milliseconds:0} ms (the ack timeout, at most half the operation timeout) and {Unfinished} messages handed out from them are still unsettled: the next owner delivers them again, possibly while they are still being handled here")]
    public static partial void RevocationWaitExpired(ILogger logger, string group, string topic, double milliseconds, int unfinished);

    [LoggerMessage(4018, LogLevel.Warning, "kafka: resuming fetching for group {Group} on topic {Topic} after a rebalance failed; partitions paused by flow control may stay paused")]
    public static partial void ResumeFailed(ILogger logger, string group, string topic, Exception exception);
}
