using System.Diagnostics.CodeAnalysis;
using System.Threading.Channels;
using System.Threading.Tasks.Sources;
using Bus.Transport;

namespace Bus.Memory;

/// <summary>
/// One consumer of an in-memory group. Its credit is the subscription's max in-flight (the prefetch): one slot per
/// message taken from the group and not yet settled, whether still buffered here or handed to the application.
/// </summary>
/// <remarks>
/// <para>
/// The consumer pulls: when its buffer is empty, its reader takes a batch from the group under the topic's lock (up
/// to its credit, at most <see cref="MaxBatch"/>), and when the group has nothing it sleeps until the group wakes it.
/// Core reads one message at a time (<see cref="MessageConsumer"/> serialises its readers), so the sleep belongs to
/// one reader, and the buffer has one reader. Slots and buffer are filled under the lock, in that reader's pull or,
/// when the group has competing consumers, by whoever hands out shares (see <see cref="MemoryGroup.Changed"/>).
/// </para>
/// <para>
/// An ack frees its slot with one compare-and-swap and takes no lock. Everything that changes the group's queues
/// (nack, expiry, release on close, the next message of an ordered key) runs under the topic's lock. A slot's tag is
/// written last when it is filled and swapped to zero exactly once when it is freed, by whichever of ack, nack, expiry
/// or close gets there first; the others find a different tag and do nothing, as a settlement of an expired delivery
/// always did.
/// </para>
/// </remarks>
internal sealed class MemoryReceiver : TransportReceiver
{
    /// <summary>The most a pull takes: bounds how long it holds the topic's lock (publishers wait on it meanwhile).</summary>
    public const int MaxBatch = 128;

    // Gather's bounds: a spin of 10 is about 0.3 µs here (two or three publishes), so at most about 5 µs in all.
    private const int GatherTarget = 32;
    private const int GatherSpin = 10;
    private const int GatherRounds = 16;
    private static readonly bool CanGather = Environment.ProcessorCount > 1;

    private const int SlotBits = 16; // SubscriptionOptions.MaxInFlight is at most 65,535
    private const long SlotMask = (1L << SlotBits) - 1;

    private readonly MemoryTopic _topic;
    private readonly MemoryGroup _group;
    private readonly Slot[] _slots;
    private readonly Buffer _buffer;
    private readonly Reader _reader;
    private int _occupied;     // slots in use; raised in a pull (under the topic's lock), lowered by whoever frees a slot
    private int _nextSlot;     // under the topic's lock: where the search for a free slot starts
    private long _deliveries;  // under the topic's lock: makes every tag unique
    private volatile bool _closed;

    public MemoryReceiver(MemoryTopic topic, MemoryGroup group, SubscriptionOptions options)
    {
        _topic = topic;
        _group = group;
        _slots = new Slot[options.MaxInFlight];
        _buffer = new Buffer(Math.Min(options.MaxInFlight, MaxBatch));
        AckTimeoutMs = (long)Math.Ceiling(options.AckTimeout.TotalMilliseconds);
        _reader = new Reader(this);
    }

    public override ChannelReader<ReceivedMessage> Deliveries => _reader;

    /// <summary>How many more messages this consumer may take.</summary>
    public int Credit => _slots.Length - Volatile.Read(ref _occupied);

    /// <summary>How many messages the group may hand this consumer now: its credit, bounded by its buffer's room. Under the topic's lock.</summary>
    public int Room => _closed ? 0 : Math.Min(Credit, _buffer.Room);

    public long AckTimeoutMs { get; }

    /// <summary>The group this consumer belongs to.</summary>
    public MemoryGroup Group => _group;

    /// <summary>Whether the group's queue of sleeping consumers has this one. Under the topic's lock.</summary>
    public bool QueuedToWake { get; set; }

    /// <summary>
    /// Puts a message taken from the group in a free slot and in the buffer. Under the topic's lock, in this
    /// consumer's pull or when the group hands competing consumers their shares; at most <see cref="Room"/> times.
    /// </summary>
    public void Fill(Pending pending, long deadline)
    {
        var index = _nextSlot;
        while (Volatile.Read(ref _slots[index].Tag) != 0)
        {
            // Credit above zero means a free slot exists: acks free a slot before they give back its credit.
            index = index + 1 == _slots.Length ? 0 : index + 1;
        }

        _nextSlot = index + 1 == _slots.Length ? 0 : index + 1;
        var tag = (++_deliveries << SlotBits) | (long)index;
        ref var slot = ref _slots[index];
        slot.Pending = pending;
        slot.Deadline = deadline;
        Volatile.Write(ref slot.Tag, tag);
        Interlocked.Increment(ref _occupied);

        // Made here, under the lock, while the group still holds the message: once the lock is released an expiry
        // could pass it to another consumer, whose ack could let go of the stored copy.
        var stored = pending.Message;
        _buffer.Add(new ReceivedMessage(
            _topic.Name, stored.Body, stored.Key, stored.Headers, stored.MessageIdText, stored.AssignedId, stored.CorrelationId,
            stored.ContentType, stored.ReplyTo, pending.Deliveries, stored.Offset, stored.Timestamp, tag));
    }

    /// <summary>Wakes this consumer's sleeping reader. Under the topic's lock. False when it was not asleep.</summary>
    public bool Wake() => _reader.Wake(true);

    /// <summary>
    /// Frees the slot of <paramref name="tag"/> if that delivery still holds it, and gives its credit back. False when
    /// the delivery expired or was released already (its message belongs to someone else now).
    /// </summary>
    public bool TryFree(long tag, out Pending pending)
    {
        var index = tag & SlotMask;
        if (tag <= 0 || index >= _slots.Length)
        {
            // Not a tag this consumer handed out. Tag 0 would "free" a free slot and leave the count one short, and a
            // fill then searching for a slot that is not there would spin under the topic's lock.
            pending = default;
            return false;
        }

        ref var slot = ref _slots[(int)index];
        // Read before the swap: once the slot is free it may be filled again. When the swap succeeds this is the
        // delivery's own message: the caller got the tag from the buffer, after Fill wrote the slot.
        pending = slot.Pending;
        if (Interlocked.CompareExchange(ref slot.Tag, 0, tag) != tag)
        {
            pending = default;
            return false;
        }

        Interlocked.Decrement(ref _occupied);
        return true;
    }

    /// <summary>Whether the delivery of <paramref name="tag"/> still holds its slot (not settled, expired or released).</summary>
    public bool Holds(long tag)
    {
        var index = tag & SlotMask;
        return tag > 0 && index < _slots.Length && Volatile.Read(ref _slots[(int)index].Tag) == tag;
    }

    /// <summary>Frees every slot whose deadline has passed and passes its message on. Under the topic's lock.</summary>
    public void FreeExpired(long now, Action<Pending> requeue) => Free(now, all: false, requeue);

    /// <summary>Frees every slot (the consumer is leaving) and passes its message on. Under the topic's lock.</summary>
    public void FreeAll(Action<Pending> requeue) => Free(0, all: true, requeue);

    private void Free(long now, bool all, Action<Pending> requeue)
    {
        // Nothing is filled while the lock is held, so at most this many slots are in use: stop once all are seen
        // (a large max in-flight with little in flight is then not a full scan every time).
        var inUse = Volatile.Read(ref _occupied);
        for (var i = 0; i < _slots.Length && inUse > 0; i++)
        {
            var tag = Volatile.Read(ref _slots[i].Tag);
            if (tag == 0)
            {
                continue;
            }

            inUse--;
            if ((all || _slots[i].Deadline <= now) && TryFree(tag, out var pending))
            {
                requeue(pending);
            }
        }
    }

    public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (!TryFree(message.DeliveryTag, out var pending))
        {
            return default;
        }

        if (_group.Ordered && pending.Message.Key is not null)
        {
            lock (_topic.Sync)
            {
                _group.Acked(pending); // reads the key: before the release below clears it
            }
        }

        pending.Message.Release(); // this group is done with the message
        return default;
    }

    public override ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        lock (_topic.Sync)
        {
            if (TryFree(message.DeliveryTag, out var pending))
            {
                _group.Nacked(pending, delay);
            }
        }

        return default;
    }

    public override ValueTask DisposeAsync()
    {
        lock (_topic.Sync)
        {
            if (_closed)
            {
                return default;
            }

            // Buffered deliveries hold slots too: releasing every slot returns them to the group. The reader drops
            // its buffer when it next looks (it is the reader's, and a read may be under way).
            _closed = true;
            _reader.Wake(false);
            _group.RemoveConsumer(this);
        }

        _reader.Completed.TrySetResult();
        return default;
    }

    /// <summary>
    /// Before a pull: while a publisher is still adding to what waits, lets the batch grow to <see cref="GatherTarget"/>
    /// (or this consumer's credit), for at most <see cref="GatherRounds"/> short spins, and stops as soon as a spin sees
    /// nothing added. The reader's, without the lock.
    /// </summary>
    /// <remarks>
    /// Why: publisher and consumer meet on the topic's lock and the group's queue once per pull, and on two cores moving
    /// those between the two CPUs' caches costs more than the messages themselves. A consumer that keeps up with its
    /// publisher pulls every two to four messages, each pull slows the publisher, and the two settle there (1.3M msg/s,
    /// 1.4 µs of CPU per message, against 0.4 µs for one thread doing both sides). Waiting a few hundred nanoseconds
    /// while messages are still arriving makes the batches bigger. A quiet topic costs one spin per pull; a single
    /// CPU never spins (the publisher could not run meanwhile).
    /// </remarks>
    private void Gather()
    {
        if (!CanGather)
        {
            return;
        }

        var target = Math.Min(Credit, GatherTarget);
        var seen = _group.Waiting;
        for (var round = 0; round < GatherRounds && seen < target; round++)
        {
            Thread.SpinWait(GatherSpin);
            var now = _group.Waiting;
            if (now <= seen)
            {
                break; // nothing added (or a competing consumer took some): take what is there
            }

            seen = now;
        }
    }

    /// <summary>
    /// Takes the next buffered delivery that still holds its slot. The reader's. A buffered delivery can expire before
    /// anyone reads it (its ack timeout runs from the pull, as a prefetched message's visibility timeout does on SQS):
    /// its message went back to the group, maybe to another consumer that has acked it since, so it is dropped here.
    /// </summary>
    private bool TryTakeCurrent([MaybeNullWhen(false)] out ReceivedMessage message)
    {
        while (_buffer.TryTake(out message))
        {
            if (Holds(message.DeliveryTag))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Takes a batch from the group into the buffer. The reader's. False when there was nothing to take.</summary>
    private bool TryPull()
    {
        if (!_group.HasWaiting)
        {
            return false;
        }

        Gather();
        lock (_topic.Sync)
        {
            return !_closed && _group.Pull(this, Room) > 0;
        }
    }

    /// <summary>
    /// The deliveries taken for this consumer and not yet read: a ring written under the topic's lock (by the
    /// reader's pull, or by the group handing out shares) and read by the one reader without it.
    /// </summary>
    private sealed class Buffer(int capacity)
    {
        private readonly ReceivedMessage?[] _items = new ReceivedMessage?[(int)System.Numerics.BitOperations.RoundUpToPowerOf2((uint)capacity)];
        private int _head; // the reader's: next to read
        private int _tail; // under the topic's lock: next to write

        public bool IsEmpty => Volatile.Read(ref _head) == Volatile.Read(ref _tail);

        /// <summary>Free places. Under the topic's lock. Usually what credit allows anyway; less only when buffered deliveries expired and their slots were filled again.</summary>
        public int Room => _items.Length - (_tail - Volatile.Read(ref _head));

        /// <summary>Under the topic's lock, with <see cref="Room"/> above zero.</summary>
        public void Add(ReceivedMessage message)
        {
            var tail = _tail;
            _items[tail & (_items.Length - 1)] = message;
            Volatile.Write(ref _tail, tail + 1); // after the item: the reader sees the item once it sees the count
        }

        /// <summary>The reader's.</summary>
        public bool TryTake([MaybeNullWhen(false)] out ReceivedMessage message)
        {
            var head = _head;
            if (head == Volatile.Read(ref _tail))
            {
                message = null;
                return false;
            }

            ref var item = ref _items[head & (_items.Length - 1)];
            message = item!;
            item = null;
            Volatile.Write(ref _head, head + 1); // after clearing: the place may be written again once it is seen free
            return true;
        }

        /// <summary>The reader's, once the consumer is closed (nothing is added any more).</summary>
        public void Drop()
        {
            while (TryTake(out _))
            {
            }
        }
    }

    /// <summary>A message handed out: its tag (0 when the slot is free), its message and delivery count, its deadline.</summary>
    private struct Slot
    {
        public long Tag;
        public Pending Pending;
        public long Deadline;
    }

    /// <summary>
    /// The consumer's deliveries as a channel reader for one reader at a time (core serialises its reads): reads the
    /// buffer, pulls from the group when it is empty, and sleeps when the group has nothing.
    /// </summary>
    private sealed class Reader(MemoryReceiver owner) : ChannelReader<ReceivedMessage>, IValueTaskSource<bool>
    {
        private ManualResetValueTaskSourceCore<bool> _sleep = new() { RunContinuationsAsynchronously = true };
        private CancellationTokenRegistration _cancellation;
        private bool _asleep; // under the topic's lock

        public TaskCompletionSource Completed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override Task Completion => Completed.Task;

        public override bool TryRead([MaybeNullWhen(false)] out ReceivedMessage item)
        {
            if (owner._closed)
            {
                owner._buffer.Drop();
                item = null;
                return false;
            }

            return owner.TryTakeCurrent(out item) || (owner.TryPull() && owner.TryTakeCurrent(out item));
        }

        public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<bool>(cancellationToken);
            }

            if (!owner._buffer.IsEmpty || owner.TryPull())
            {
                return new(true);
            }

            lock (owner._topic.Sync)
            {
                if (owner._closed)
                {
                    return new(false);
                }

                // Looked at again under the lock: a publish between the pull above and here has woken nobody, and
                // may have handed this consumer its share.
                if (!owner._buffer.IsEmpty || owner._group.Pull(owner, owner.Room) > 0)
                {
                    return new(true);
                }

                _sleep.Reset();
                _asleep = true;
                owner._group.Sleep(owner);
                if (cancellationToken.CanBeCanceled)
                {
                    _cancellation = cancellationToken.UnsafeRegister(static (state, token) => ((Reader)state!).Cancel(token), this);
                }

                return new(this, _sleep.Version);
            }
        }

        /// <summary>Ends the sleep (<paramref name="more"/>: there may be messages; else closed). Under the topic's lock.</summary>
        public bool Wake(bool more)
        {
            if (!_asleep)
            {
                return false;
            }

            _asleep = false;
            _sleep.SetResult(more);
            return true;
        }

        private void Cancel(CancellationToken token)
        {
            lock (owner._topic.Sync)
            {
                if (!_asleep)
                {
                    return;
                }

                // Left in the group's queue of sleepers: waking a reader that is not asleep does nothing.
                _asleep = false;
                _sleep.SetException(new OperationCanceledException(token));
            }
        }

        bool IValueTaskSource<bool>.GetResult(short token)
        {
            // Not under the lock: disposing waits for a running callback, and the callback takes the lock.
            _cancellation.Dispose();
            _cancellation = default;
            return _sleep.GetResult(token);
        }

        ValueTaskSourceStatus IValueTaskSource<bool>.GetStatus(short token) => _sleep.GetStatus(token);

        void IValueTaskSource<bool>.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
            => _sleep.OnCompleted(continuation, state, token, flags);
    }
}
