namespace Bus.Kafka.Internal;

/// <summary>
/// The commit position of one partition while this consumer owns it. Messages are fetched in offset order but
/// settled in any order (max in-flight above 1, per-key holds, retries); the committable offset is the lowest offset
/// fetched and not yet acknowledged, or the one after the highest fetched when everything is done. Committing only
/// that contiguous prefix means an unacknowledged message is never skipped by a successor after a rebalance or crash.
/// Not thread-safe: the receiver guards it.
/// </summary>
/// <remarks>
/// Fetched offsets sit in ascending order in one array (a window from the oldest unacknowledged offset on), each with
/// an acknowledged flag: fetching appends, acknowledging finds the offset by binary search, and the window's start
/// moves past every acknowledged offset at its head. Nothing is allocated per message (a sorted set allocated a node
/// per fetch and rebalanced on every acknowledgement). When the array is full and at least half of the window is
/// acknowledged (one message stuck while the partition flows on), the acknowledged entries are dropped, so the window
/// holds at most about twice the pending offsets and never grows with the partition's traffic.
/// </remarks>
internal sealed class PartitionOffsets
{
    private long[] _offsets = new long[64];
    private bool[] _acked = new bool[64];
    private int _head;   // first entry of the window: the oldest unacknowledged offset
    private int _tail;   // one past the last entry
    private int _pending;
    private long _next;
    private long _lastReported;

    /// <summary>Starts tracking at <paramref name="start"/>, the offset the consumer begins reading at.</summary>
    public PartitionOffsets(long start)
    {
        _next = start;
        _lastReported = start;
    }

    /// <summary>Messages fetched and not yet acknowledged.</summary>
    public int Pending => _pending;

    /// <summary>Entries the window's array has room for (for tests: it follows the pending count, not the traffic).</summary>
    internal int Capacity => _offsets.Length;

    /// <summary>The offset to commit: everything below it is acknowledged.</summary>
    public long Committable => _head < _tail ? _offsets[_head] : _next;

    /// <summary>
    /// Records a fetched message. Offsets arrive in increasing order; gaps (compaction, markers) are fine. One lower
    /// than the newest (the fetch position was reset) is placed in order and is pending until acknowledged again.
    /// </summary>
    public void Fetched(long offset)
    {
        if (_head == _tail || offset > _offsets[_tail - 1])
        {
            MakeRoom();
            _offsets[_tail] = offset;
            _acked[_tail] = false;
            _tail++;
            _pending++;
        }
        else
        {
            var index = Array.BinarySearch(_offsets, _head, _tail - _head, offset);
            if (index >= 0)
            {
                // Fetched again: pending again if it was acknowledged meanwhile, as it will be delivered again.
                if (_acked[index])
                {
                    _acked[index] = false;
                    _pending++;
                }

                return;
            }

            // Rare: an offset below the newest one. Shift the entries above it up by one.
            MakeRoom();
            index = Array.BinarySearch(_offsets, _head, _tail - _head, offset);
            index = ~index;
            Array.Copy(_offsets, index, _offsets, index + 1, _tail - index);
            Array.Copy(_acked, index, _acked, index + 1, _tail - index);
            _offsets[index] = offset;
            _acked[index] = false;
            _tail++;
            _pending++;
        }

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
        var index = _head < _tail ? Array.BinarySearch(_offsets, _head, _tail - _head, offset) : -1;
        if (index < 0 || _acked[index])
        {
            return null;
        }

        _acked[index] = true;
        _pending--;
        while (_head < _tail && _acked[_head])
        {
            _head++;
        }

        if (_head == _tail)
        {
            _head = _tail = 0;
        }

        var committable = Committable;
        if (committable <= _lastReported)
        {
            return null;
        }

        _lastReported = committable;
        return committable;
    }

    /// <summary>
    /// Ensures one free entry at the end: drops the window's acknowledged entries when they are at least half of it
    /// (shrinking an array that has become far too large), else slides the window to the array's start, or doubles the
    /// array. Dropping them changes no answer: an offset absent from the window is unknown to <see cref="Ack"/>, as an
    /// acknowledged one is, and is placed in order if fetched again.
    /// </summary>
    private void MakeRoom()
    {
        if (_tail < _offsets.Length)
        {
            return;
        }

        var used = _tail - _head;
        if (_pending <= used / 2)
        {
            var kept = 0;
            for (var read = _head; read < _tail; read++)
            {
                if (!_acked[read])
                {
                    _offsets[kept++] = _offsets[read];
                }
            }

            Array.Clear(_acked, 0, kept);
            if (_offsets.Length > 64 && kept <= _offsets.Length / 8)
            {
                var length = Math.Max(64, _offsets.Length / 4);
                _offsets = _offsets[..length];
                _acked = new bool[length];
            }

            _head = 0;
            _tail = kept;
            return;
        }

        if (used <= _offsets.Length / 2)
        {
            Array.Copy(_offsets, _head, _offsets, 0, used);
            Array.Copy(_acked, _head, _acked, 0, used);
        }
        else
        {
            var offsets = new long[_offsets.Length * 2];
            var acked = new bool[offsets.Length];
            Array.Copy(_offsets, _head, offsets, 0, used);
            Array.Copy(_acked, _head, acked, 0, used);
            _offsets = offsets;
            _acked = acked;
        }

        _head = 0;
        _tail = used;
    }
}
