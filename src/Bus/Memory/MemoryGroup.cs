namespace Bus.Memory;

/// <summary>
/// One consumer group of a topic: what is waiting, its consumers (each holds what it has in flight, and until when),
/// and, for an ordered group, which keys have a message in flight (such a key's later messages wait, so per-key order
/// holds across competing consumers and across retries). Every member runs under the topic's lock, except
/// <see cref="HasBacklog"/>, which an ack reads without it.
/// </summary>
internal sealed class MemoryGroup
{
    private readonly MemoryTopic _topic;
    private readonly Queue<Pending> _fresh = new();
    private readonly PriorityQueue<Pending, long> _retry = new();          // by offset: oldest first
    private readonly PriorityQueue<Pending, long> _delayedRetry = new();   // by due tick
    private readonly Dictionary<string, Queue<Pending>?> _activeKeys = new(StringComparer.Ordinal);
    private readonly List<MemoryReceiver> _consumers = [];
    private readonly Action<Pending> _requeue;
    private int _roundRobin;
    private long _nextDeadlineScan;
    private int _backlog; // 1 while messages wait for a consumer's credit

    public MemoryGroup(MemoryTopic topic, string name, bool ordered, StartPosition start)
    {
        _topic = topic;
        Name = name;
        Ordered = ordered;
        _requeue = pending => _retry.Enqueue(pending, pending.Message.Offset);
        foreach (var stored in topic.RetainedFrom(start))
        {
            stored.Hold(1);
            Offer(new Pending(stored));
        }
    }

    public string Name { get; }

    public bool Ordered { get; }

    /// <summary>Whether messages wait for a consumer's credit: an ack that frees enough of it then dispatches. Read without the lock.</summary>
    public bool HasBacklog => Volatile.Read(ref _backlog) != 0;

    public void AddConsumer(MemoryReceiver receiver)
    {
        _consumers.Add(receiver);
        Dispatch();
    }

    public void RemoveConsumer(MemoryReceiver receiver)
    {
        _consumers.Remove(receiver);
        receiver.FreeAll(_requeue);
        Dispatch();
    }

    /// <summary>A newly published (or replayed) message joins the group.</summary>
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

    /// <summary>Hands waiting messages to consumers with credit, round robin.</summary>
    public void Dispatch()
    {
        while (_consumers.Count > 0 && (_retry.Count > 0 || _fresh.Count > 0))
        {
            var receiver = NextWithCredit();
            if (receiver is null)
            {
                // Announce the backlog before looking once more: an ack frees credit before it checks the flag, so
                // either that ack sees the flag (and refills now, or leaves it to the next tick when it has buffered
                // messages and less than a quarter of its credit free), or this second look sees its credit.
                Interlocked.Exchange(ref _backlog, 1);
                receiver = NextWithCredit();
                if (receiver is null)
                {
                    return;
                }
            }

            var pending = _retry.Count > 0 ? _retry.Dequeue() : _fresh.Dequeue();
            pending.Deliveries++;
            receiver.Deliver(pending, MemoryClock.NowMs + receiver.AckTimeoutMs);
        }

        // Emptied (or no consumer is left to wait for credit).
        if (_backlog != 0)
        {
            Volatile.Write(ref _backlog, 0);
        }
    }

    /// <summary>An ack of an ordered group's keyed message (its slot is free already): the key's next message may go.</summary>
    public void Acked(Pending done)
    {
        ReleaseKey(done);
        Dispatch();
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

        Dispatch();
    }

    public void Tick(long now)
    {
        var changed = HasBacklog; // a consumer short of the refill threshold gets what it can take, at least every tick
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
            Dispatch();
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

    private MemoryReceiver? NextWithCredit()
    {
        var count = _consumers.Count;
        for (var i = 0; i < count; i++)
        {
            var candidate = _consumers[(_roundRobin + i) % count];
            if (candidate.Credit > 0)
            {
                _roundRobin = (_roundRobin + i + 1) % count;
                return candidate;
            }
        }

        return null;
    }
}
