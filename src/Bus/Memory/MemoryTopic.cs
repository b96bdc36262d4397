using Bus.Transport;

namespace Bus.Memory;

/// <summary>
/// A topic: a retained log (for replay) and its groups. One lock guards the topic and all its groups, so every
/// state change is a short critical section and the semantics are easy to check.
/// </summary>
internal sealed class MemoryTopic(string name, int retention)
{
    private readonly MessageStore _store = new();
    private readonly List<StoredMessage> _log = [];
    private readonly Dictionary<string, MemoryGroup> _groups = new(StringComparer.Ordinal);
    private readonly PriorityQueue<StoredMessage, long> _delayed = new();
    private MemoryGroup[] _groupArray = [];
    private TopicOptions? _options;
    private long _nextOffset;

    public Lock Sync { get; } = new();

    public string Name { get; } = name;

    public void Ensure(TopicDefinition definition)
    {
        lock (Sync)
        {
            if (_options is null)
            {
                _options = definition.Options.Clone();
            }
            else
            {
                ThrowIfConflict(definition.Options);
            }

            foreach (var group in definition.DurableGroups)
            {
                if (!_groups.ContainsKey(group))
                {
                    AddGroup(new MemoryGroup(this, group, ordered: false, StartPosition.Latest));
                }
            }
        }
    }

    public void Publish(OutgoingMessage message)
    {
        var now = DateTime.UtcNow.Ticks;
        lock (Sync)
        {
            Store(message, now);
        }
    }

    public void PublishBatch(IReadOnlyList<OutgoingMessage> messages)
    {
        var now = DateTime.UtcNow.Ticks;
        lock (Sync)
        {
            for (var i = 0; i < messages.Count; i++)
            {
                Store(messages[i], now);
            }
        }
    }

    public MemoryReceiver Join(SubscriptionOptions options)
    {
        lock (Sync)
        {
            if (!_groups.TryGetValue(options.Group, out var group))
            {
                group = new MemoryGroup(this, options.Group, options.PerKeyOrdering, options.StartPosition);
                AddGroup(group);
            }

            var receiver = new MemoryReceiver(this, group, options);
            group.AddConsumer(receiver);
            return receiver;
        }
    }

    public void Tick(long now)
    {
        lock (Sync)
        {
            while (_delayed.TryPeek(out _, out var due) && due <= now)
            {
                Append(_delayed.Dequeue());
            }

            foreach (var group in _groupArray)
            {
                group.Tick(now);
            }
        }
    }

    /// <summary>Messages from the retained log that a new group starting at <paramref name="start"/> receives. Under the lock.</summary>
    internal IEnumerable<StoredMessage> RetainedFrom(StartPosition start)
    {
        switch (start.Kind)
        {
            case StartPositionKind.Earliest:
                return _log;
            case StartPositionKind.Position:
                if (!long.TryParse(start.Position, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var offset))
                {
                    throw new BusException($"memory: '{start.Position}' is not a position of topic '{Name}' (positions are offsets).", BusFailureReason.Configuration, "memory", Name);
                }

                return _log.Where(m => m.Offset >= offset);
            case StartPositionKind.Time:
                return _log.Where(m => m.Timestamp >= start.Time);
            default:
                return [];
        }
    }

    /// <summary>Stores a copy of the message and appends it now or, when it has a delay, once it is due. Under the lock.</summary>
    private void Store(OutgoingMessage message, long utcTicks)
    {
        var stored = _store.Add(message, utcTicks);
        if (message.Delay is { } delay && delay > TimeSpan.Zero)
        {
            _delayed.Enqueue(stored, MemoryClock.DueMs(delay));
        }
        else
        {
            Append(stored);
        }
    }

    private void Append(StoredMessage stored)
    {
        stored.SetOffset(_nextOffset++);
        stored.Hold(1 + _groupArray.Length); // the log and every group
        _log.Add(stored);
        if (_log.Count > retention + (retention / 4) + 1)
        {
            // Trim in chunks: RemoveRange is O(n), so amortise it.
            var trimmed = _log.Count - retention;
            for (var i = 0; i < trimmed; i++)
            {
                _log[i].Release();
            }

            _log.RemoveRange(0, trimmed);
        }

        foreach (var group in _groupArray)
        {
            group.Offer(new Pending(stored));
            group.Changed();
        }
    }

    private void AddGroup(MemoryGroup group)
    {
        _groups.Add(group.Name, group);
        _groupArray = [.. _groups.Values];
    }

    private void ThrowIfConflict(TopicOptions requested)
    {
        var existing = _options!;
        string? conflict =
            requested.Partitions is { } p && existing.Partitions is { } ep && p != ep ? $"partitions {ep} vs {p}" :
            requested.Ordered is { } o && existing.Ordered is { } eo && o != eo ? $"ordered {eo} vs {o}" :
            requested.Retention is { } r && existing.Retention is { } er && r != er ? $"retention {er} vs {r}" :
            null;
        if (conflict is not null)
        {
            throw new BusException($"memory: topic '{Name}' exists with other options ({conflict}).", BusFailureReason.TopicConflict, "memory", Name);
        }

        existing.Partitions ??= requested.Partitions;
        existing.Ordered ??= requested.Ordered;
        existing.Retention ??= requested.Retention;
    }
}
