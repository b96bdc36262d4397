namespace Bus.Memory;

/// <summary>
/// One consumer group of a topic: what is waiting, what is in flight with which consumer and until when, and,
/// for an ordered group, which keys have a message in flight (such a key's later messages wait, so per-key order
/// holds across competing consumers and across retries). Every member runs under the topic's lock.
/// </summary>
internal sealed class MemoryGroup
{
    private readonly MemoryTopic _topic;
    private readonly Queue<Pending> _fresh = new();
    private readonly PriorityQueue<Pending, long> _retry = new();          // by offset: oldest first
    private readonly PriorityQueue<Pending, long> _delayedRetry = new();   // by due tick
    private readonly Dictionary<string, Queue<Pending>?> _activeKeys = new(StringComparer.Ordinal);
    private readonly Dictionary<long, InFlight> _inFlight = [];
    private readonly List<MemoryReceiver> _consumers = [];
    private long _nextTag;
    private int _roundRobin;
    private long _nextDeadlineScan;

    public MemoryGroup(MemoryTopic topic, string name, bool ordered, StartPosition start)
    {
        _topic = topic;
        Name = name;
        Ordered = ordered;
        foreach (var stored in topic.RetainedFrom(start))
        {
            Offer(new Pending(stored));
        }
    }

    public string Name { get; }

    public bool Ordered { get; }

    public void AddConsumer(MemoryReceiver receiver)
    {
        _consumers.Add(receiver);
        Dispatch();
    }

    public void RemoveConsumer(MemoryReceiver receiver)
    {
        _consumers.Remove(receiver);
        List<long>? released = null;
        foreach (var (tag, flight) in _inFlight)
        {
            if (flight.Receiver == receiver)
            {
                (released ??= []).Add(tag);
            }
        }

        if (released is not null)
        {
            foreach (var tag in released)
            {
                _inFlight.Remove(tag, out var flight);
                _retry.Enqueue(flight.Pending, flight.Pending.Message.Offset);
            }
        }

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
                return;
            }

            var pending = _retry.Count > 0 ? _retry.Dequeue() : _fresh.Dequeue();
            pending.Deliveries++;
            var tag = ++_nextTag;
            _inFlight.Add(tag, new InFlight(pending, receiver, MemoryClock.NowMs + receiver.AckTimeoutMs));
            receiver.Deliver(pending, tag);
        }
    }

    public void Settle(long tag, MemoryReceiver receiver, bool redeliver, TimeSpan delay)
    {
        if (!_inFlight.TryGetValue(tag, out var flight) || flight.Receiver != receiver)
        {
            return; // Expired or released already: it belongs to someone else now.
        }

        _inFlight.Remove(tag);
        receiver.Credit++;
        if (!redeliver)
        {
            ReleaseKey(flight.Pending);
        }
        else if (delay > TimeSpan.Zero)
        {
            _delayedRetry.Enqueue(flight.Pending, MemoryClock.DueMs(delay));
        }
        else
        {
            // The key stays active, so nothing later of this key overtakes the nacked message.
            _retry.Enqueue(flight.Pending, flight.Pending.Message.Offset);
        }

        Dispatch();
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

        if (_inFlight.Count > 0 && now >= _nextDeadlineScan)
        {
            _nextDeadlineScan = now + 20;
            List<long>? expired = null;
            foreach (var (tag, flight) in _inFlight)
            {
                if (flight.Deadline <= now)
                {
                    (expired ??= []).Add(tag);
                }
            }

            if (expired is not null)
            {
                foreach (var tag in expired)
                {
                    // The consumer kept it past its ack timeout: another consumer may have it.
                    _inFlight.Remove(tag, out var flight);
                    flight.Receiver.Credit++;
                    _retry.Enqueue(flight.Pending, flight.Pending.Message.Offset);
                }

                changed = true;
            }
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
        for (var i = 0; i < _consumers.Count; i++)
        {
            var candidate = _consumers[(_roundRobin + i) % _consumers.Count];
            if (candidate.Credit > 0)
            {
                _roundRobin = (_roundRobin + i + 1) % _consumers.Count;
                return candidate;
            }
        }

        return null;
    }

    private readonly record struct InFlight(Pending Pending, MemoryReceiver Receiver, long Deadline);
}
