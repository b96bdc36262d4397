using Bus.Redis;
using Bus.Redis.Internal;
using Bus.Transport;

[assembly: BusTransport(typeof(RedisTransportFactory))]

namespace Bus.Redis;

/// <summary>
/// Redis Streams (<c>redis://</c>, and <c>rediss://</c> for TLS):
/// <c>redis://[user:password@]host[:port][/database][?setting=value&amp;...]</c>. A topic is a stream key, a group a
/// consumer group, a consumer a named consumer of it.
/// </summary>
/// <remarks>
/// <para>Settings (URI query or <see cref="BusOptions.Settings"/>):</para>
/// <list type="bullet">
/// <item><description><c>max-message-size</c>: bytes, default 16777216 (16 MiB); at most 536870912 (Redis's 512 MB string limit).</description></item>
/// <item><description><c>trim-maxlen</c>: every XADD trims the stream to about this many entries (<c>MAXLEN ~</c>). Default: no trimming.</description></item>
/// <item><description><c>trim-max-age</c>: every XADD trims entries older than this (<c>MINID ~ &lt;now - age&gt;</c>), e.g. <c>7d</c>. Excludes <c>trim-maxlen</c>.</description></item>
/// <item><description><c>trim-exact</c>: <c>true</c> trims exactly (<c>=</c>) instead of approximately (<c>~</c>, cheaper).</description></item>
/// <item><description><c>poll-max-delay</c>: the longest pause between two empty polls of a consumer, default 20 ms.</description></item>
/// <item><description><c>claim-interval</c>: how often a consumer looks for entries to reclaim (XAUTOCLAIM), default 200 ms.</description></item>
/// <item><description><c>delay-check-interval</c>: how often a consumer looks for due delayed messages published by other processes, default 1 s.</description></item>
/// <item><description><c>tls-host</c>: the TLS server name for <c>rediss://</c>, default the URI's host. <c>client-name</c>: CLIENT SETNAME, default <c>bus</c>.</description></item>
/// </list>
/// <para>
/// Trimming removes entries whatever the groups have read: a trimmed entry that a group has not yet consumed (or
/// that is pending) is lost for it. That is why the default is no trimming; choose a bound that is larger than any
/// backlog you expect.
/// </para>
/// </remarks>
public sealed class RedisTransportFactory : IBusTransportFactory
{
    /// <summary>The backend's name: <c>redis</c>.</summary>
    public const string BackendName = "redis";

    /// <summary>The longest topic (stream key) name this adapter accepts: 256.</summary>
    public const int MaxTopicNameLength = 256;

    /// <summary>What the Redis Streams backend provides.</summary>
    public static readonly BackendCapabilities DeclaredCapabilities = new()
    {
        Backend = BackendName,
        Features = BusFeatures.PerKeyOrdering | BusFeatures.Replay | BusFeatures.ReplayFromPosition | BusFeatures.ReplayFromTime
            | BusFeatures.RequestReply | BusFeatures.FanOutToGroups | BusFeatures.ExactDeliveryCount | BusFeatures.RedeliveryOfAbandoned
            | BusFeatures.AckTimeoutRedelivery
            | BusFeatures.CompetingConsumers | BusFeatures.DelayedNack | BusFeatures.DelayedDelivery | BusFeatures.RemoteBroker
            | BusFeatures.SharedDeliveryCount,
        MaxMessageSize = RedisSettings.DefaultMaxMessageSize,
        MaxTopicNameLength = MaxTopicNameLength,
        Remarks = new Dictionary<BusFeatures, string>
        {
            [BusFeatures.PerKeyOrdering] = "a stream is totally ordered and one consumer reads it in order; core runs a key's handlers one at a time",
            [BusFeatures.OrderedAcrossConsumers] = "a consumer group spreads a stream's entries over its consumers with no notion of key, so two consumers can handle one key's messages at the same time",
            [BusFeatures.OrderedRetry] = "a nacked entry stays in the pending list and is claimed again later, after the consumer has been handed the entries behind it",
            [BusFeatures.NativeDeadLetter] = "Redis does not dead-letter; core counts deliveries (from the pending entries list) and this adapter writes the copy and acknowledges the original in one Lua script (XACK + XADD), so it is in exactly one of the two streams",
            [BusFeatures.DelayedDelivery] = "emulated: streams have no delayed entries, so a delayed message waits in the sorted set '<topic>#delayed' scored by its due time (server clock) and is moved into the stream (XADD + ZREM in one Lua script, so it is in exactly one of them) by the topic's Bus consumers, which look when a local publish is due and at least every delay-check-interval (1 s); its position and timestamp are those of the move, and it is only moved while a Bus consumer of the topic runs",
            [BusFeatures.RequestReply] = "emulated by core with a private reply stream per bus",
            [BusFeatures.Persistence] = "XADD is confirmed from memory; whether it survives a restart depends on the server's appendonly/appendfsync configuration, which the adapter cannot see or wait for",
            [BusFeatures.TopicConflictDetection] = "a stream has no options (partitions, retention) that could conflict: ensuring a topic only creates its durable groups; trimming is a per-publisher setting",
            [BusFeatures.ExactDeliveryCount] = "counted by Redis per entry in the pending entries list (XREADGROUP sets 1, each claim for delivery adds 1); a claim by a consumer that dies before handing the entry out still counts",
            [BusFeatures.DelayedNack] = "a nack sets the entry's idle time so that it becomes claimable (XAUTOCLAIM with the ack timeout) after the delay; delays longer than the ack timeout keep the lease fresh until then, from the consumer that nacked: if it closes or dies first, the entry is delivered again one ack timeout after the last renewal. Consumers of one group should share one AckTimeout",
            [BusFeatures.SharedDeliveryCount] = "the count is the entry's in the group's pending entries list, kept by Redis",
            [BusFeatures.RedeliveryOfAbandoned] = "XAUTOCLAIM of entries idle longer than the ack timeout; a closed consumer makes its unsettled entries claimable at once",
            [BusFeatures.AckTimeoutRedelivery] = "an entry pending longer than the ack timeout is claimed (XAUTOCLAIM, every claim-interval, default 200 ms) by any consumer of the group, the one holding it included",
        },
    };

    /// <inheritdoc />
    public string Backend => BackendName;

    /// <inheritdoc />
    public IReadOnlyList<string> Schemes { get; } = ["redis", "rediss"];

    /// <inheritdoc />
    public BackendCapabilities Capabilities => DeclaredCapabilities;

    /// <inheritdoc />
    /// <exception cref="BusConfigurationException">The URI or a setting is invalid.</exception>
    public MessageTransport Create(TransportContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var settings = RedisSettings.Parse(context);
        var capabilities = DeclaredCapabilities.WithMaxMessageSize(settings.MaxMessageSize);
        return new RedisTransport(context, settings, capabilities);
    }

    /// <summary>
    /// Why <paramref name="topic"/> is not a stream name this adapter accepts, or <see langword="null"/>. Redis keys
    /// are binary-safe, but topics are restricted to ASCII letters, digits, '.', '_', '-' and ':' so that they are
    /// readable in tools and safe in every client.
    /// </summary>
    /// <param name="topic">A non-empty name.</param>
    public static string? ValidateStreamName(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        foreach (var c in topic)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-' or ':'))
            {
                var shown = char.IsControl(c) || char.IsWhiteSpace(c) ? $"\\u{(int)c:x4}" : c.ToString();
                return $"character '{shown}' is not allowed in a stream name (use letters, digits, '.', '_', '-' and ':')";
            }
        }

        return null;
    }
}
