namespace Bus.RabbitMq.Internal;

/// <summary>
/// Per-key admission for one receiver, as the reference backend does for an ordered group: at most one delivery of a
/// key is handed out at a time; later deliveries of that key wait here (still unacknowledged on the broker, inside the
/// prefetch) until it is settled. After a nack the key waits for the nacked message to come back (RabbitMQ returns a
/// requeued message ahead of the queue), so nothing of the key overtakes it. If it went to another consumer of the
/// group instead, the key is released after <see cref="RedeliveryWait"/>. Only the delivery a key has in flight
/// moves it on: when the channel shuts down the gate is cleared (the broker requeues everything unacknowledged), and a
/// settlement of a delivery from before that must not release the key its redelivered copy now holds.
/// </summary>
internal sealed class KeyGate(Action<ReceivedMessage> handOut)
{
    /// <summary>How long a key waits for its nacked message to be redelivered to this consumer.</summary>
    public static readonly TimeSpan RedeliveryWait = TimeSpan.FromSeconds(5);

    private readonly Dictionary<string, State> _keys = new(StringComparer.Ordinal);

    /// <summary>A delivery arrived: hand it out now or hold it behind its key.</summary>
    public void Offer(ReceivedMessage message)
    {
        if (message.Key is not { } key)
        {
            handOut(message);
            return;
        }

        lock (_keys)
        {
            if (!_keys.TryGetValue(key, out var state))
            {
                _keys.Add(key, new State { InFlight = message });
                handOut(message);
            }
            else if (state.InFlight is null && state.AwaitedId == message.MessageId)
            {
                // The nacked message is back: it goes before everything held behind it.
                state.AwaitedId = null;
                state.InFlight = message;
                handOut(message);
            }
            else
            {
                state.Held.Enqueue(message);
            }
        }
    }

    /// <summary>A delivery was acknowledged (or dead-lettered): the next one of its key may go.</summary>
    public void Settled(ReceivedMessage message)
    {
        if (message.Key is not { } key)
        {
            return;
        }

        lock (_keys)
        {
            if (_keys.TryGetValue(key, out var state) && ReferenceEquals(state.InFlight, message))
            {
                state.InFlight = null;
                NextOrForget(key, state);
            }
        }
    }

    /// <summary>A delivery is being nacked: its key waits for it to come back.</summary>
    public void Returning(ReceivedMessage message)
    {
        if (message.Key is not { } key)
        {
            return;
        }

        lock (_keys)
        {
            if (_keys.TryGetValue(key, out var state) && ReferenceEquals(state.InFlight, message))
            {
                state.InFlight = null;
                state.AwaitedId = message.MessageId;
                state.Generation++;
            }
        }
    }

    /// <summary>Releases the key if the nacked message has not come back within <see cref="RedeliveryWait"/>.</summary>
    public async Task ReleaseIfNotBackAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (message.Key is not { } key)
        {
            return;
        }

        int generation;
        lock (_keys)
        {
            if (!_keys.TryGetValue(key, out var state) || state.AwaitedId != message.MessageId)
            {
                return;
            }

            generation = state.Generation;
        }

        await Task.Delay(RedeliveryWait, cancellationToken).ConfigureAwait(false);
        lock (_keys)
        {
            if (_keys.TryGetValue(key, out var state) && state.AwaitedId == message.MessageId && state.Generation == generation && state.InFlight is null)
            {
                state.AwaitedId = null;
                NextOrForget(key, state);
            }
        }
    }

    /// <summary>Forgets everything held and in flight (the channel closed or is closing, so the broker requeues it).</summary>
    public void Clear()
    {
        lock (_keys)
        {
            _keys.Clear();
        }
    }

    private void NextOrForget(string key, State state)
    {
        if (state.AwaitedId is not null)
        {
            return;
        }

        if (state.Held.TryDequeue(out var next))
        {
            state.InFlight = next;
            handOut(next);
        }
        else
        {
            _keys.Remove(key);
        }
    }

    private sealed class State
    {
        public Queue<ReceivedMessage> Held { get; } = new();

        /// <summary>The delivery of this key handed out and not yet settled, if any.</summary>
        public ReceivedMessage? InFlight { get; set; }

        public string? AwaitedId { get; set; }

        public int Generation { get; set; }
    }
}
