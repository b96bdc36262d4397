namespace Bus.Transport;

/// <summary>How a <see cref="SettlementBatcher{T}"/> forms and sends batches.</summary>
public sealed class SettlementBatcherOptions
{
    /// <summary>Most items in one batch (the broker's limit: 10 for SQS DeleteMessageBatch). Default 1,000.</summary>
    public int MaxBatchSize { get; init; } = 1_000;

    /// <summary>Most batches being sent at once. Default 1.</summary>
    public int MaxConcurrentFlushes { get; init; } = 1;

    /// <summary>
    /// How long a partly filled batch may wait for more items while other batches are being sent. A batch is sent at
    /// once when nothing else is in flight, so a lone settlement never waits. <see cref="TimeSpan.Zero"/> (the
    /// default): no timer; a partly filled batch goes when a flush slot frees.
    /// </summary>
    public TimeSpan Linger { get; init; }
}

/// <summary>
/// Coalesces settlements (acks, deletes) into batched broker calls, Nagle-style: an item joins the open batch; the
/// batch is sent when it is full, when no other batch is in flight, or when <see cref="SettlementBatcherOptions.Linger"/>
/// has passed; at most <see cref="SettlementBatcherOptions.MaxConcurrentFlushes"/> are in flight. A lone
/// settlement costs one round trip; a busy consumer settles in full batches. Every item of a batch shares one
/// completion, so an item costs no allocation of its own beyond the caller's await.
/// </summary>
/// <typeparam name="T">What the broker call needs per item (a receipt handle, a stream id).</typeparam>
public sealed class SettlementBatcher<T> : IAsyncDisposable
{
    private readonly Func<IReadOnlyList<T>, ValueTask<IReadOnlyList<Exception?>?>> _flush;
    private readonly int _maxBatchSize;
    private readonly int _maxConcurrentFlushes;
    private readonly TimeSpan _linger;
    private readonly Lock _lock = new();
    private readonly Queue<Batch> _sealed = new();
    private readonly Timer? _lingerTimer;
    private Batch? _open;
    private int _inFlight;
    private bool _disposed;
    private TaskCompletionSource? _drained;

    /// <summary>Creates a batcher.</summary>
    /// <param name="flush">
    /// Sends one batch. Returns null when every item succeeded, or one entry per item (null for success) when some
    /// failed; throwing fails every item of the batch with that exception.
    /// </param>
    /// <param name="options">Batch size, concurrency and linger.</param>
    public SettlementBatcher(Func<IReadOnlyList<T>, ValueTask<IReadOnlyList<Exception?>?>> flush, SettlementBatcherOptions options)
    {
        ArgumentNullException.ThrowIfNull(flush);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxBatchSize, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxConcurrentFlushes, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Linger, TimeSpan.Zero);
        _flush = flush;
        _maxBatchSize = options.MaxBatchSize;
        _maxConcurrentFlushes = options.MaxConcurrentFlushes;
        _linger = options.Linger;
        if (_linger > TimeSpan.Zero)
        {
            _lingerTimer = new Timer(static state => ((SettlementBatcher<T>)state!).OnLingerElapsed(), this, Timeout.Infinite, Timeout.Infinite);
        }
    }

    /// <summary>Adds an item; completes when the batch that carries it has been sent and confirmed.</summary>
    /// <param name="item">The item.</param>
    /// <param name="cancellationToken">Stops waiting; the item is still sent.</param>
    /// <exception cref="ObjectDisposedException">The batcher was disposed.</exception>
    public ValueTask AddAsync(T item, CancellationToken cancellationToken = default)
    {
        var batch = Enqueue(item, out var index);
        return AwaitAsync(batch, index, cancellationToken);
    }

    /// <summary>
    /// Adds an item without waiting for its batch: for settlements whose failure the broker repairs by itself (an
    /// unacknowledged entry is delivered again), where the caller has nothing to do with the outcome. The flush
    /// delegate reports failures (logs them); nothing is allocated per item and no continuation runs per item.
    /// <see cref="DisposeAsync"/> still waits until the item has been sent.
    /// </summary>
    /// <param name="item">The item.</param>
    /// <exception cref="ObjectDisposedException">The batcher was disposed.</exception>
    public void Add(T item) => Enqueue(item, out _);

    /// <summary>Sends what is waiting and waits for every batch in flight.</summary>
    public async ValueTask DisposeAsync()
    {
        Task drained;
        Batch? send = null;
        lock (_lock)
        {
            if (_disposed && _drained is null)
            {
                return;
            }

            _disposed = true;
            if (_open is not null && _inFlight < _maxConcurrentFlushes)
            {
                send = SealOpen();
            }
            else if (_open is not null)
            {
                _sealed.Enqueue(_open);
                _open = null;
            }

            if (_inFlight == 0 && send is null && _sealed.Count == 0)
            {
                drained = Task.CompletedTask;
            }
            else
            {
                _drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                drained = _drained.Task;
            }
        }

        if (send is not null)
        {
            _ = SendAsync(send);
        }

        await drained.ConfigureAwait(false);
        if (_lingerTimer is not null)
        {
            await _lingerTimer.DisposeAsync().ConfigureAwait(false);
        }
    }

    private Batch Enqueue(T item, out int index)
    {
        Batch batch;
        Batch? send = null;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            batch = _open ??= new Batch(Math.Min(_maxBatchSize, 64));
            index = batch.Items.Count;
            batch.Items.Add(item);
            if (batch.Items.Count >= _maxBatchSize || _inFlight == 0)
            {
                send = SealOpen();
            }
            else if (index == 0)
            {
                // A new batch that has to wait for a flush slot: it goes after the linger at the latest.
                _lingerTimer?.Change(_linger, Timeout.InfiniteTimeSpan);
            }
        }

        if (send is not null)
        {
            _ = SendAsync(send);
        }

        return batch;
    }

    private static async ValueTask AwaitAsync(Batch batch, int index, CancellationToken cancellationToken)
    {
        var errors = await batch.Done.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
        if (errors is not null && index < errors.Count && errors[index] is { } error)
        {
            throw error;
        }
    }

    /// <summary>Takes the open batch for sending and counts it in flight. Called under the lock.</summary>
    private Batch? SealOpen()
    {
        var batch = _open;
        if (batch is null)
        {
            return null;
        }

        _open = null;
        if (_inFlight >= _maxConcurrentFlushes)
        {
            _sealed.Enqueue(batch);
            return null;
        }

        _inFlight++;
        return batch;
    }

    private void OnLingerElapsed()
    {
        Batch? send;
        lock (_lock)
        {
            send = SealOpen();
        }

        if (send is not null)
        {
            _ = SendAsync(send);
        }
    }

    private async Task SendAsync(Batch batch)
    {
        while (batch is not null)
        {
            try
            {
                batch.Done.TrySetResult(await _flush(batch.Items).ConfigureAwait(false));
            }
            catch (Exception ex)
            {
                batch.Done.TrySetException(ex);
                _ = batch.Done.Task.Exception; // observed: items added with Add have nobody awaiting them
            }

            // The slot goes to a batch that was sealed while this one was in flight, or to the open batch: nothing
            // else is in flight for it to wait for.
            lock (_lock)
            {
                if (_sealed.TryDequeue(out var next))
                {
                    batch = next;
                }
                else if (_open is not null && (_inFlight == 1 || _disposed))
                {
                    batch = _open;
                    _open = null;
                }
                else
                {
                    batch = null!;
                    _inFlight--;
                    if (_inFlight == 0 && _disposed)
                    {
                        _drained?.TrySetResult();
                    }
                }
            }
        }
    }

    private sealed class Batch(int capacity)
    {
        public List<T> Items { get; } = new(capacity);

        public TaskCompletionSource<IReadOnlyList<Exception?>?> Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
