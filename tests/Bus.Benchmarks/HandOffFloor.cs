namespace Bus.Benchmarks;

/// <summary>
/// A floor for the embedded backend: the least a broker of memory://'s shape does per message, written with none of
/// Bus's code, so that memory:// can be compared with the best that shape allows on the same machine in the same run.
/// </summary>
/// <remarks>
/// <para>
/// What it keeps, because the contract asks it of any in-process broker: the publisher copies the body (the caller may
/// reuse its buffer once the publish returns) into a shared buffer, reads the clock (the message's timestamp, which
/// replay by time compares with the caller's clock), and fills an entry of a retained block (body, key, ids, offset,
/// time, a count of holders) under the topic's lock, then queues the entry for the group. The consumer takes up to 128
/// queued entries under the same lock, builds one delivery object per message (what the application holds and settles)
/// and acks it with one compare-and-swap and one decrement of the entry's holders.
/// </para>
/// <para>
/// What it leaves out, so that it flatters the floor: validation, ids as text, delivery counts and slots, ack
/// deadlines, redelivery, retention trimming, async plumbing, metrics and tracing; and the consumer spins on the queue
/// instead of sleeping, so no publish ever wakes it.
/// </para>
/// </remarks>
internal sealed class HandOffFloor
{
    private const int BlockSize = 512;
    private const int BufferSize = 64 * 1024;
    private const int MaxBatch = 128;

    private readonly Lock _sync = new();
    private readonly bool _lockFree;
    private readonly (Block Block, int Index)[] _queue;
    private Block _block = new(BlockSize);
    private byte[] _buffer = GC.AllocateUninitializedArray<byte>(BufferSize);
    private int _bufferUsed;
    private long _head; // the consumer's (under the lock unless lock-free)
    private long _tail; // the publisher's (under the lock unless lock-free); read without it by a spinning consumer
    private long _nextOffset;
    private long _nextId;

    /// <param name="capacity">Most messages queued at once (rounded up to a power of two).</param>
    /// <param name="lockFree">
    /// False: publish and take under one lock, as memory:// does (any thread may publish, and a topic's groups, nacks,
    /// expiries and competing consumers change its queues). True: one publisher and one consumer meet only on the
    /// queue's head and tail, which no general broker can assume.
    /// </param>
    public HandOffFloor(int capacity, bool lockFree)
    {
        _queue = new (Block, int)[(int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity)];
        _lockFree = lockFree;
    }

    /// <summary>Stores a copy of <paramref name="message"/> and queues it for the group.</summary>
    public void Publish(OutgoingMessage message)
    {
        var utcTicks = DateTime.UtcNow.Ticks;
        if (_lockFree)
        {
            Store(message.Body.Span, message, utcTicks);
            return;
        }

        lock (_sync)
        {
            Store(message.Body.Span, message, utcTicks);
        }
    }

    private void Store(ReadOnlySpan<byte> body, OutgoingMessage message, long utcTicks)
    {
        if (_block.Count == BlockSize)
        {
            _block = new Block(BlockSize);
        }

        if (BufferSize - _bufferUsed < body.Length)
        {
            _buffer = GC.AllocateUninitializedArray<byte>(BufferSize);
            _bufferUsed = 0;
        }

        var copy = new Memory<byte>(_buffer, _bufferUsed, body.Length);
        body.CopyTo(copy.Span);
        _bufferUsed += body.Length;

        var index = _block.Count++;
        ref var entry = ref _block.Entries[index];
        entry.Body = copy;
        entry.Key = message.Key;
        entry.MessageId = message.MessageIdText;
        entry.AssignedId = (UInt128)(++_nextId);
        entry.Offset = _nextOffset++;
        entry.UtcTicks = utcTicks;
        entry.Holders = 2; // the retained log and the group
        _queue[_tail & (_queue.Length - 1)] = (_block, index);
        Volatile.Write(ref _tail, _tail + 1); // after the entry: the consumer sees the entry once it sees the tail
    }

    /// <summary>Forgets what was queued (between rounds of the publish-only row, which has no consumer).</summary>
    public void Clear() => Volatile.Write(ref _head, Volatile.Read(ref _tail));

    /// <summary>Consumes <paramref name="count"/> messages: batches under the lock, a delivery object and an ack each.</summary>
    public void Consume(int count)
    {
        var batch = new (Block Block, int Index)[MaxBatch];
        long tag = 0;
        for (var received = 0; received < count;)
        {
            if (Volatile.Read(ref _tail) == Volatile.Read(ref _head))
            {
                Thread.SpinWait(20);
                continue;
            }

            int taken;
            if (_lockFree)
            {
                taken = Take(batch);
            }
            else
            {
                lock (_sync)
                {
                    taken = Take(batch);
                }
            }

            for (var i = 0; i < taken; i++)
            {
                ref var entry = ref batch[i].Block.Entries[batch[i].Index];
                var delivery = new Delivery("topic", entry.Body, entry.Key, entry.AssignedId, entry.Offset, entry.UtcTicks, ++tag);
                if (Interlocked.CompareExchange(ref delivery.Settlement, 1, 0) == 0)
                {
                    Interlocked.Decrement(ref entry.Holders);
                }
            }

            received += taken;
        }
    }

    private int Take((Block Block, int Index)[] batch)
    {
        var taken = 0;
        var tail = Volatile.Read(ref _tail);
        while (taken < batch.Length && _head < tail)
        {
            batch[taken++] = _queue[_head & (_queue.Length - 1)];
            _head++;
        }

        Volatile.Write(ref _head, _head);
        return taken;
    }

    private struct Entry
    {
        public ReadOnlyMemory<byte> Body;
        public string? Key;
        public string? MessageId;
        public UInt128 AssignedId;
        public long Offset;
        public long UtcTicks;
        public int Holders;
    }

    private sealed class Block(int capacity)
    {
        public readonly Entry[] Entries = new Entry[capacity];
        public int Count;
    }

    /// <summary>What the application receives: the message's fields, its delivery tag and its settlement.</summary>
    private sealed class Delivery(string topic, ReadOnlyMemory<byte> body, string? key, UInt128 id, long offset, long utcTicks, long tag)
    {
        public readonly string Topic = topic;
        public readonly ReadOnlyMemory<byte> Body = body;
        public readonly string? Key = key;
        public readonly UInt128 Id = id;
        public readonly long Offset = offset;
        public readonly long UtcTicks = utcTicks;
        public readonly long Tag = tag;
        public int Settlement;
    }
}
