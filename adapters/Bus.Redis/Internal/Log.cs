using Microsoft.Extensions.Logging;

namespace Bus.Redis.Internal;

/// <summary>Redis adapter log messages: event ids 3000–3999. URLs are always the redacted form.</summary>
internal static partial class Log
{
    [LoggerMessage(3001, LogLevel.Information, "redis: connected to {Url} (database {Database}, TLS {Tls})")]
    public static partial void Connected(ILogger logger, string url, int database, bool tls);

    [LoggerMessage(3002, LogLevel.Warning, "redis: cannot connect to {Url}")]
    public static partial void ConnectFailed(ILogger logger, string url, Exception exception);

    [LoggerMessage(3010, LogLevel.Debug, "redis: consumer {Consumer} joined group {Group} on stream {Topic} (start {Start})")]
    public static partial void Joined(ILogger logger, string topic, string group, string consumer, string start);

    [LoggerMessage(3011, LogLevel.Debug, "redis: consumer {Consumer} of group {Group} on stream {Topic} closed and released {Released} unsettled entries")]
    public static partial void Released(ILogger logger, string topic, string group, string consumer, long released);

    [LoggerMessage(3012, LogLevel.Warning, "redis: releasing the unsettled entries of consumer {Consumer} (group {Group}, stream {Topic}) failed; they become claimable after the ack timeout")]
    public static partial void ReleaseFailed(ILogger logger, string topic, string group, string consumer, Exception exception);

    [LoggerMessage(3013, LogLevel.Warning, "redis: reading stream {Topic} for group {Group} failed; retrying in {Delay}")]
    public static partial void ReadFailed(ILogger logger, string topic, string group, TimeSpan delay, Exception exception);

    [LoggerMessage(3014, LogLevel.Error, "redis: the receiver for stream {Topic} (group {Group}) stopped")]
    public static partial void ReceiverFailed(ILogger logger, string topic, string group, Exception exception);

    [LoggerMessage(3017, LogLevel.Warning, "redis: group {Group} of stream {Topic} no longer exists (deleted, or the server restarted without persistence); it is created again from the start of the stream")]
    public static partial void GroupRecreated(ILogger logger, string topic, string group, Exception exception);

    [LoggerMessage(3015, LogLevel.Debug, "redis: consumer {Consumer} claimed {Count} pending entries of group {Group} on stream {Topic}")]
    public static partial void Claimed(ILogger logger, string topic, string group, string consumer, int count);

    [LoggerMessage(3016, LogLevel.Warning, "redis: entry {EntryId} of stream {Topic} was trimmed or deleted while pending in group {Group}; it cannot be delivered")]
    public static partial void PendingEntryDeleted(ILogger logger, string topic, string group, string entryId);

    [LoggerMessage(3018, LogLevel.Warning, "redis: XACK of {Count} entries (consumer {Consumer}, group {Group}, stream {Topic}) failed; they stay pending and are delivered again after the ack timeout")]
    public static partial void AckFailed(ILogger logger, string topic, string group, string consumer, int count, Exception exception);

    [LoggerMessage(3019, LogLevel.Warning, "redis: the server did not answer the close of {What} within {Budget}; later closes do not wait for it until it answers again")]
    public static partial void ServerSilentOnClose(ILogger logger, string what, TimeSpan budget);

    [LoggerMessage(3021, LogLevel.Warning, "redis: consumer {Consumer} (group {Group}, stream {Topic}) closed while waiting for the server; its unsettled entries are not released and become claimable after the ack timeout")]
    public static partial void CloseAbandoned(ILogger logger, string topic, string group, string consumer);

    [LoggerMessage(3022, LogLevel.Warning, "redis: consumer {Consumer} read entry {EntryId} of stream {Topic}, at or below the highest it had been given ({HighestId}): group {Group} was moved back (XGROUP SETID), created again, or restored to an older state; until its reads pass that id, an entry read again replaces this consumer's older delivery of it")]
    public static partial void GroupMovedBack(ILogger logger, string topic, string group, string consumer, string entryId, string highestId);

    [LoggerMessage(3020, LogLevel.Debug, "redis: dead-letter of entry {EntryId} (stream {Topic}, group {Group}) skipped: it was already acknowledged, expired or released, or another consumer has claimed it")]
    public static partial void DeadLetterSkipped(ILogger logger, string topic, string group, string entryId);
}
