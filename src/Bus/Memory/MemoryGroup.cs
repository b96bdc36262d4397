namespace Bus.Memory;

/// <summary>
/// One consumer group of a topic: what is waiting, its consumers (each holds what it has in flight, and until when),
/// and, for an ordered group, which keys have a message in flight (such a key's later messages wait, so per-key order
/// holds across competing consumers and across retries). Consumers pull: a consumer whose buffer is empty takes a
/// batch (<see cref="Pull"/>), and one that finds nothing waits until <see cref="Changed"/> wakes it; competing
/// consumers are also handed their shares (see <see cref="Changed"/>). Every member runs under the topic's lock,
/// except <see cref="HasWaiting"/>, which a consumer reads without it.
/// </summary>
/// <remarks>
/// Why pull rather than push: when the publisher handed each message to a consumer, publisher and consumer wrote the
/// same memory once per message each (the consumer's slots and count, the channel between them), and on two cores the
/// traffic between their caches cost more than the work: two threads moved messages at less than half the rate of one
/// thread doing both sides. Now a consumer's slots are its own, and the two meet on the topic's lock once per batch.
/// </remarks>
internal sealed class MemoryGroup
{
    private readonly Queue<Pending> _fresh = new();
    private readonly PriorityQueue<Pending, long> _retry = new();          // by offset: oldest first
    private readonly PriorityQueue<Pending, long> _delayedRetry = new();   // by due tick
    private readonly Dictionary<string, Queue<Pending>?> _activeKeys = new(StringComparer.Ordinal);
    private readonly List<MemoryReceiver> _consumers = [];
    private readonly Queue<MemoryReceiver> _sleeping = new();
    private readonly Action<Pending> _requeue;
    private long _nextDeadlineScan;
    private int _nextConsumer; // competing consumers: who is handed a share first next time
    private int _waiting; // messages a consumer may take now; written under the lock, read without it

    public MemoryGroup(MemoryTopic topic, string name, bool ordered, StartPosition start)
    {
        Name = name;
        Ordered = ordered;
        _requeue = pending => _retry.Enqueue(pending, pending.Message.Offset);
        foreach (var stored in topic.RetainedFrom(start))
        {
            stored.Hold(1);
            Offer(new Pending(stored));
        }

        _waiting = _retry.Count + _fresh.Count;
    }

    public string Name { get; }

    public bool Ordered { get; }

    /// <summary>Whether messages wait to be taken. Read without the lock: a consumer looks before it takes the lock.</summary>
    public bool HasWaiting => Waiting != 0;

    /// <summary>How many messages wait to be taken. Read without the lock, as <see cref="HasWaiting"/>.</summary>
    public int Waiting => Volatile.Read(ref _waiting);

    public void AddConsumer(MemoryReceiver receiver) => _consumers.Add(receiver);

    /// <summary>Consumers in the queue of sleepers (some may have stopped sleeping since). Under the topic's lock.</summary>
    public int SleepersQueued => _sleeping.Count;

    public void RemoveConsumer(MemoryReceiver receiver)
    {
        _consumers.Remove(receiver);
        if (receiver.QueuedToWake)
        {
            // A consumer whose sleep was cancelled stays queued until a wake-up reaches it, which on a quiet topic
            // may be never: it would keep the closed consumer (its slots and buffer) alive with it.
            receiver.QueuedToWake = false;
            for (var i = _sleeping.Count; i > 0; i--)
            {
                var sleeper = _sleeping.Dequeue();
                if (sleeper != receiver)
                {
                    _sleeping.Enqueue(sleeper);
                }
            }
        }

        receiver.FreeAll(_requeue);
        Changed();
    }

    /// <summary>A newly published (or replayed) message joins the group. Call <see cref="Changed"/> after.</summary>
    public void Offer(Pending pending)
    {
        if (Ordered && pending.Message.Key is { } key)
        {
            ref var waiting = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_activeKeys, key, out var active);
            if (active)
            {
                (waiting ??= new Queue<Pending>()).Enqueue(pending);
                return;
            }
        }

        _fresh.Enqueue(pending);
    }

    /// <summary>
    /// Hands up to <paramref name="max"/> waiting messages to <paramref name="receiver"/>, retries (oldest first)
    /// before new ones. Returns how many.
    /// </summary>
    public int Pull(MemoryReceiver receiver, int max)
    {
        var taken = Take(receiver, max);
        Changed();
        return taken;
    }

    private int Take(MemoryReceiver receiver, int max)
    {
        var taken = 0;
        var deadline = MemoryClock.NowMs + receiver.AckTimeoutMs;
        while (taken < max && (_retry.Count > 0 || _fresh.Count > 0))
        {
            var pending = _retry.Count > 0 ? _retry.Dequeue() : _fresh.Dequeue();
            pending.Deliveries++;
            receiver.Fill(pending, deadline);
            taken++;
        }

        return taken;
    }

    /// <summary>A consumer found nothing to take: <see cref="Changed"/> wakes it when something comes.</summary>
    public void Sleep(MemoryReceiver receiver)
    {
        // Once: a reader whose sleep was cancelled stays queued, and waking one that is not asleep does nothing.
        if (!receiver.QueuedToWake)
        {
            receiver.QueuedToWake = true;
            _sleeping.Enqueue(receiver);
        }
    }

    /// <summary>
    /// After anything that may have made messages available: hands competing consumers their shares, publishes the
    /// count for consumers to read without the lock, and wakes as many sleeping consumers as there are messages.
    /// </summary>
    /// <remarks>
    /// A lone consumer takes its batches itself. Competing consumers are handed theirs, round robin, each up to its
    /// credit: a consumer that was woken, or has not started reading, runs only once a thread is free for it, and
    /// meanwhile a busy one, back for more every few microseconds, would take everything (a batch of 200 went
    /// entirely to one of two consumers about half the time). Handing over costs the waker the filling, and the two
    /// threads then share the consumer's memory; with one consumer there is nobody to be fair to.
    /// </remarks>
    public void Changed()
    {
        var waiting = _retry.Count + _fresh.Count;
        if (waiting > 0 && _consumers.Count > 1)
        {
            waiting = HandOut(waiting); // what is left
        }

        if (_waiting != waiting)
        {
            Volatile.Write(ref _waiting, waiting);
        }

        for (var toWake = waiting; toWake > 0 && _sleeping.TryDequeue(out var receiver);)
        {
            receiver.QueuedToWake = false;
            if (receiver.Wake())
            {
                toWake--;
            }
        }
    }

    private int HandOut(int waiting)
    {
        var count = _consumers.Count;
        var first = _nextConsumer < count ? _nextConsumer : 0;
        _nextConsumer = first + 1;
        for (var i = 0; i < count && waiting > 0; i++)
        {
            var index = first + i;
            var receiver = _consumers[index < count ? index : index - count];
            var share = Math.Min(Math.Min(receiver.Room, MemoryReceiver.MaxBatch), (waiting + count - i - 1) / (count - i));
            if (share > 0 && Take(receiver, share) is var taken and > 0)
            {
                waiting -= taken;
                receiver.Wake(); // when it sleeps: its buffer has something now
            }
        }

        return waiting;
    }

    /// <summary>An ack of an ordered group's keyed message (its slot is free already): the key's next message may go.</summary>
    public void Acked(Pending done)
    {
        ReleaseKey(done);
        Changed();
    }

    /// <summary>A nack (its slot is free already): deliver again, at once or after <paramref name="delay"/>.</summary>
    public void Nacked(Pending pending, TimeSpan delay)
    {
        if (delay > TimeSpan.Zero)
        {
            _delayedRetry.Enqueue(pending, MemoryClock.DueMs(delay));
        }
        else
        {
            // The key stays active, so nothing later of this key overtakes the nacked message.
            _retry.Enqueue(pending, pending.Message.Offset);
        }

        Changed();
    }

    public void Tick(long now)
    {
        var changed = false;
        while (_delayedRetry.TryPeek(out _, out var due) && due <= now)
        {
            var pending = _delayedRetry.Dequeue();
            _retry.Enqueue(pending, pending.Message.Offset);
            changed = true;
        }

        if (now >= _nextDeadlineScan)
        {
            _nextDeadlineScan = now + 20;
            var before = _retry.Count;
            foreach (var receiver in _consumers)
            {
                // A consumer kept these past its ack timeout: another consumer may have them.
                receiver.FreeExpired(now, _requeue);
            }

            changed |= _retry.Count != before;
        }

        if (changed)
        {
            Changed();
        }
    }

    private void ReleaseKey(Pending done)
    {
        if (!Ordered || done.Message.Key is not { } key || !_activeKeys.TryGetValue(key, out var waiting))
        {
            return;
        }

        if (waiting is { Count: > 0 })
        {
            var next = waiting.Dequeue();
            _retry.Enqueue(next, next.Message.Offset);
        }
        else
        {
            _activeKeys.Remove(key);
        }
    }
}
