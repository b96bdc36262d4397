namespace Bus.Internal;

/// <summary>
/// A count of free slots (a consumer's max in-flight; with one slot, its gate of one reader at a time): taking and
/// returning one is a compare-and-swap or an increment, and only a caller that finds none free waits (on a semaphore
/// used as a wake-up signal).
/// </summary>
/// <remarks>
/// Why not a <see cref="SemaphoreSlim"/> of MaxInFlight: its every Wait and Release takes its lock, and once anyone
/// has waited on it that lock is inflated, so every message paid two slow-path lock round trips on the receive and
/// settle path (about a fifth of the samples of the in-memory backend's one-thread benchmark). Wake-ups cannot be
/// lost: a waiter registers and then looks for a free slot again, and a release adds its slot and then looks for a
/// registered waiter; both steps are interlocked (full fences), so at least one of the two sees the other. A spare
/// signal (its waiter cancelled, or a slot taken first by <see cref="TryTake"/>) only makes a later waiter look again.
/// </remarks>
internal sealed class InFlightSlots(int capacity)
{
    private readonly SemaphoreSlim _freed = new(0);
    private readonly int _capacity = capacity;
    private int _free = capacity;
    private int _waiters;

    /// <summary>Slots in use.</summary>
    public int InUse => _capacity - Volatile.Read(ref _free);

    /// <summary>Takes a free slot if there is one.</summary>
    public bool TryTake()
    {
        var free = Volatile.Read(ref _free);
        while (free > 0)
        {
            var seen = Interlocked.CompareExchange(ref _free, free - 1, free);
            if (seen == free)
            {
                return true;
            }

            free = seen;
        }

        return false;
    }

    /// <summary>Takes a slot, waiting for one to be returned when none is free.</summary>
    public ValueTask TakeAsync(CancellationToken cancellationToken)
        => TryTake() ? default : WaitAndTakeAsync(cancellationToken);

    /// <summary>Returns a slot.</summary>
    public void Return()
    {
        Interlocked.Increment(ref _free);
        if (Volatile.Read(ref _waiters) > 0)
        {
            _freed.Release();
        }
    }

    private async ValueTask WaitAndTakeAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            Interlocked.Increment(ref _waiters);
            try
            {
                if (TryTake())
                {
                    return;
                }

                await _freed.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                Interlocked.Decrement(ref _waiters);
            }

            if (TryTake())
            {
                return;
            }
        }
    }
}
