namespace Bus.Benchmarks;

/// <summary>
/// A skeleton of the embedded backend's hot path: a subset of what a broker of memory://'s shape does per message,
/// written with none of Bus's code, so that memory:// can be compared with what that shape costs on the same machine
/// in the same run. Not a bound: it measures one design, and its figures move with details such as atomic operations
/// and memory layout.
/// </summary>
/// <remarks>
/// <para>
/// What it keeps, because the contract asks it of any in-process broker:
/// - The publisher copies the body into a shared buffer, because the caller may reuse its buffer once the publish returns.
/// - It reads the clock. The message's timestamp is what replay by time compares with the caller's clock.
/// - It takes an id from a shared counter with an interlocked increment, as memory://'s id generator does.
/// - Under the publishers' lock, it fills an entry of a retained block (body, key, id, offset, time, a count of holders
///   added atomically) and queues the entry for the group.
/// - The consumer takes up to 128 queued entries at a time and builds one delivery object per message, which is what
///   the application holds and settles.
/// - It acks each delivery with one compare-and-swap and one decrement of the entry's holders.
/// </para>
/// <para>
/// What it leaves out, so that the skeleton is flattered:
/// - validation, ids as text, delivery counts and in-flight slots, ack deadlines, redelivery and retention trimming;
/// - async plumbing, metrics and tracing;
/// - most of the delivery object: it is about half the size of a <see cref="ReceivedMessage"/>;
/// - contention on the ack: its compare-and-swap is on the delivery's own field, where memory:// swaps a slot's tag
///   that expiry may also swap;
/// - sleeping: the consumer spins on the queue, so no publish ever has to wake it.
/// </para>
/// </remarks>
internal sealed class HandOffSkeleton
{
    private const int BlockSize = 512;
    private const int BufferSize = 64 * 1024;
    private const int MaxBatch = 128;

    private static long _nextId;

    private readonly Lock _sync = new();
    private readonly bool _consumerTakesLock;
    private readonly (Block Block, int Index)[] _queue;
    private Block _block = new(BlockSize);
    private byte[] _buffer = GC.AllocateUninitializedArray<byte>(BufferSize);
    private int _bufferUsed;
    // Each on a cache line of its own: the consumer writes the head while the publisher writes the tail, and on one line
    // every write of either would take the line from the other CPU.
    private PaddedLong _head; // the consumer's (and under the lock when the consumer takes it)
    private PaddedLong _tail; // written under the lock, after the entry; read without it by a spinning consumer
    private long _nextOffset;

    /// <param name="capacity">Most messages queued at once (rounded up to a power of two).</param>
    /// <param name="consumerTakesLock">
    /// True: the consumer takes its batches under the publishers' lock, as memory:// does. Its groups, nacks, expiries
    /// and competing consumers change a topic's queues under that lock. False: only publishers take the lock, and the
    /// group's one consumer reads the queue's head and tail without it. That is the fast path a broker could give a
    /// group with a single consumer and nothing to redeliver.
    /// </param>
    public HandOffSkeleton(int capacity, bool consumerTakesLock)
    {
        _queue = new (Block, int)[(int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity)];
        _consumerTakesLock = consumerTakesLock;
    }

    /// <summary>Stores a copy of <paramref name="message"/> and queues it for the group.</summary>
    public void Publish(OutgoingMessage message)
    {
        var body = message.Body.Span;
        var utcTicks = DateTime.UtcNow.Ticks;
        var id = (UInt128)(ulong)Interlocked.Increment(ref _nextId);
        lock (_sync)
        {
            if (_tail.Value - Volatile.Read(ref _head.Value) >= _queue.Length)
            {
                throw new InvalidOperationException("The skeleton's queue is full: a call published more than its capacity.");
            }

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
            entry.AssignedId = id;
            entry.Offset = _nextOffset++;
            entry.UtcTicks = utcTicks;
            Interlocked.Add(ref entry.Holders, 2); // the retained log and the group
            _queue[_tail.Value & (_queue.Length - 1)] = (_block, index);
            Volatile.Write(ref _tail.Value, _tail.Value + 1); // after the entry: the consumer sees the entry once it sees the tail
        }
    }

    /// <summary>Forgets what was queued (between calls of the publish-only row, which has no consumer).</summary>
    public void Clear()
    {
        lock (_sync)
        {
            Array.Clear(_queue);
            Volatile.Write(ref _head.Value, _tail.Value);
        }
    }

    /// <summary>Consumes <paramref name="count"/> messages: batches, a delivery object and an ack each.</summary>
    public void Consume(int count)
    {
        var batch = new (Block Block, int Index)[MaxBatch];
        long tag = 0;
        for (var received = 0; received < count;)
        {
            if (Volatile.Read(ref _tail.Value) == Volatile.Read(ref _head.Value))
            {
                Thread.SpinWait(20);
                continue;
            }

            int taken;
            if (_consumerTakesLock)
            {
                lock (_sync)
                {
                    taken = Take(batch);
                }
            }
            else
            {
                taken = Take(batch);
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

    /// <summary>Takes up to a batch from the queue, clearing the places it read (as memory://'s buffers do).</summary>
    private int Take((Block Block, int Index)[] batch)
    {
        var taken = 0;
        var head = _head.Value;
        var tail = Volatile.Read(ref _tail.Value);
        while (taken < batch.Length && head < tail)
        {
            ref var place = ref _queue[head & (_queue.Length - 1)];
            batch[taken++] = place;
            place = default;
            head++;
        }

        Volatile.Write(ref _head.Value, head);
        return taken;
    }

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Explicit, Size = 128)]
    private struct PaddedLong
    {
        [System.Runtime.InteropServices.FieldOffset(64)]
        public long Value;
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
