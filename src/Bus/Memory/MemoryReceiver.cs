using System.Threading.Channels;
using Bus.Transport;

namespace Bus.Memory;

/// <summary>
/// One consumer of an in-memory group. Its credit is the subscription's max in-flight (the prefetch): one slot per
/// message handed out and not yet settled.
/// </summary>
/// <remarks>
/// An ack frees its slot with one compare-and-swap and takes no lock, so a publisher and an acking consumer do not
/// meet on the topic's lock once per message each (in a CPU profile that contention was a quarter of the time).
/// Everything that changes the group's queues (nack, expiry, release on close, the next message of an ordered key,
/// refilling a consumer while the group has a backlog) still runs under the topic's lock. A slot's tag is written
/// last when it is filled and swapped to zero exactly once when it is freed, by whichever of ack, nack, expiry or
/// close gets there first; the others find a different tag and do nothing, as a settlement of an expired delivery
/// always did.
/// </remarks>
internal sealed class MemoryReceiver : TransportReceiver
{
    private const int SlotBits = 16; // SubscriptionOptions.MaxInFlight is at most 65,535
    private const long SlotMask = (1L << SlotBits) - 1;

    private readonly MemoryTopic _topic;
    private readonly MemoryGroup _group;
    private readonly Channel<ReceivedMessage> _channel = Channel.CreateUnbounded<ReceivedMessage>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });
    private readonly Slot[] _slots;
    private readonly int _refillAt;
    private int _occupied;     // slots in use; raised under the topic's lock, lowered by whoever frees a slot
    private int _nextSlot;     // under the topic's lock: where the search for a free slot starts
    private long _deliveries;  // under the topic's lock: makes every tag unique
    private bool _closed;

    public MemoryReceiver(MemoryTopic topic, MemoryGroup group, SubscriptionOptions options)
    {
        _topic = topic;
        _group = group;
        _slots = new Slot[options.MaxInFlight];
        // While the group has a backlog, an ack refills this consumer once a quarter of its credit is free (or it has
        // nothing buffered), so that refills take the lock once per batch, not once per message.
        _refillAt = Math.Max(1, options.MaxInFlight / 4);
        AckTimeoutMs = (long)Math.Ceiling(options.AckTimeout.TotalMilliseconds);
    }

    public override ChannelReader<ReceivedMessage> Deliveries => _channel.Reader;

    /// <summary>How many more messages the group may hand this consumer.</summary>
    public int Credit => _slots.Length - Volatile.Read(ref _occupied);

    public long AckTimeoutMs { get; }

    /// <summary>Hands a message to this consumer in a free slot. Under the topic's lock, with <see cref="Credit"/> above zero.</summary>
    public void Deliver(Pending pending, long deadline)
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

        var stored = pending.Message;
        _channel.Writer.TryWrite(new ReceivedMessage(
            _topic.Name, stored.Body, stored.Key, stored.Headers, stored.MessageIdText, stored.AssignedId, stored.CorrelationId,
            stored.ContentType, stored.ReplyTo, pending.Deliveries, stored.Offset, stored.Timestamp, tag));
    }

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
        // delivery's own message: the caller got the tag through the channel, after Deliver wrote the slot.
        pending = slot.Pending;
        if (Interlocked.CompareExchange(ref slot.Tag, 0, tag) != tag)
        {
            pending = default;
            return false;
        }

        Interlocked.Decrement(ref _occupied);
        return true;
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

        var orderedKey = _group.Ordered && pending.Message.Key is not null;
        if (orderedKey)
        {
            lock (_topic.Sync)
            {
                _group.Acked(pending); // reads the key: before the release below clears it
            }
        }

        pending.Message.Release(); // this group is done with the message
        if (!orderedKey && _group.HasBacklog && (Credit >= _refillAt || _channel.Reader.Count == 0))
        {
            lock (_topic.Sync)
            {
                _group.Dispatch();
            }
        }

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

            _closed = true;
            _group.RemoveConsumer(this);
        }

        // Buffered deliveries were in flight with this consumer and have just been released to the group.
        _channel.Writer.TryComplete();
        while (_channel.Reader.TryRead(out _))
        {
        }

        return default;
    }

    /// <summary>A message handed out: its tag (0 when the slot is free), its message and delivery count, its deadline.</summary>
    private struct Slot
    {
        public long Tag;
        public Pending Pending;
        public long Deadline;
    }
}
