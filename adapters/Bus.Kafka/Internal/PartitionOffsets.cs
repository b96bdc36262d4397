namespace Bus.Kafka.Internal;

/// <summary>
/// The commit position of one partition while this consumer owns it. Messages are fetched in offset order but
/// settled in any order (max in-flight above 1, per-key holds, retries); the committable offset is the lowest offset
/// fetched and not yet acknowledged, or the one after the highest fetched when everything is done. Committing only
/// that contiguous prefix means an unacknowledged message is never skipped by a successor after a rebalance or crash.
/// Not thread-safe: the receiver guards it.
/// </summary>
internal sealed class PartitionOffsets
{
    private readonly SortedSet<long> _pending = [];
    private long _next;
    private long _lastReported;

    /// <summary>Starts tracking at <paramref name="start"/>, the offset the consumer begins reading at.</summary>
    public PartitionOffsets(long start)
    {
        _next = start;
        _lastReported = start;
    }

    /// <summary>Messages fetched and not yet acknowledged.</summary>
    public int Pending => _pending.Count;

    /// <summary>The offset to commit: everything below it is acknowledged.</summary>
    public long Committable => _pending.Count > 0 ? _pending.Min : _next;

    /// <summary>Records a fetched message. Offsets arrive in increasing order; gaps (compaction, markers) are fine.</summary>
    public void Fetched(long offset)
    {
        _pending.Add(offset);
        if (offset >= _next)
        {
            _next = offset + 1;
        }
    }

    /// <summary>
    /// Records an acknowledgement. Returns the new committable offset when it advanced past what was last returned,
    /// else <see langword="null"/>. Unknown offsets are ignored.
    /// </summary>
    public long? Ack(long offset)
    {
        if (!_pending.Remove(offset))
        {
            return null;
        }

        var committable = Committable;
        if (committable <= _lastReported)
        {
            return null;
        }

        _lastReported = committable;
        return committable;
    }
}
