using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Polly;
using Polly.Retry;

namespace Bus.Internal;

/// <summary>
/// The push path, built on the pull path: reads a <see cref="MessageConsumer"/>, runs the handler with at most
/// <see cref="SubscriptionOptions.MaxInFlight"/> messages in progress (the consumer's slots enforce it), one at a
/// time per key when per-key ordering is on, retries failures in place (Polly) so a failing message keeps its
/// place in its key's order, and dead-letters it after <see cref="SubscriptionOptions.MaxDeliveries"/>.
/// </summary>
internal sealed class HandlerSubscription : ISubscription
{
    private static readonly ResiliencePropertyKey<ReceivedMessage> MessageKey = new("bus.message");

    private readonly MessageConsumer _consumer;
    private readonly Func<ReceivedMessage, CancellationToken, ValueTask> _handler;
    private readonly SubscriptionOptions _options;
    private readonly ILogger _logger;
    private readonly ResiliencePipeline _retry;
    private readonly CancellationTokenSource _stopReading = new();
    private readonly CancellationTokenSource _abortHandlers = new();
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Dictionary<string, Queue<ReceivedMessage>?> _busyKeys = new(StringComparer.Ordinal);
    private readonly TagList _tags;
    private readonly string _backend;
    private Task _readLoop = Task.CompletedTask;
    private int _running = 1; // the read loop counts as one, so "drained" needs it to end too
    private int _started; // 1 once the read loop started; -1 when disposed before it did (it never will)
    private volatile bool _stopping;

    /// <summary>Set when disposing gave up on handlers that did not end after their token fired.</summary>
    private volatile bool _abandoned;
    private int _disposed;

    public HandlerSubscription(MessageConsumer consumer, Func<ReceivedMessage, CancellationToken, ValueTask> handler, ILogger logger, string backend)
    {
        _consumer = consumer;
        _handler = handler;
        _options = consumer.Options;
        _logger = logger;
        _tags = BusTelemetry.Tags(backend, consumer.Topic);
        _backend = backend;
        _retry = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = int.MaxValue,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = _options.RetryDelay,
                MaxDelay = _options.MaxRetryDelay,
                ShouldHandle = args => ValueTask.FromResult(ShouldRetry(args.Outcome.Exception, args.Context)),
                OnRetry = args =>
                {
                    if (args.Context.Properties.TryGetValue(MessageKey, out var message))
                    {
                        message.CountRetry();
                        BusTelemetry.Retried.Add(1, _tags);
                    }

                    return default;
                },
            })
            .Build();
    }

    public string Topic => _consumer.Topic;

    public string Group => _consumer.Group;

    public Task Completion => _completion.Task;

    public void Start()
    {
        if (Interlocked.CompareExchange(ref _started, 1, 0) != 0)
        {
            return; // disposed already
        }

        // Without the subscriber's execution context: its current activity (say the start-up's span) must not become
        // the parent of every handled message that carries no trace context of its own, long after it ended.
        using (ExecutionContext.SuppressFlow())
        {
            _readLoop = Task.Run(ReadLoopAsync);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            await _completion.Task.ConfigureAwait(false);
            return;
        }

        _stopping = true;
        _stopReading.Cancel();
        if (Interlocked.CompareExchange(ref _started, -1, 0) == 0)
        {
            Finished(); // the read loop will not run: it cannot end by itself
        }

        try
        {
            await _drained.Task.WaitAsync(_options.ShutdownTimeout).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            Log.ShutdownTimedOut(_logger, Topic, Group, _options.ShutdownTimeout);
            _abortHandlers.Cancel();
            var grace = _options.ShutdownTimeout < MaxAbortGrace ? _options.ShutdownTimeout : MaxAbortGrace;
            try
            {
                await _drained.Task.WaitAsync(grace).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // A handler that ignores its token would hold disposal (and the host's shutdown) for good. Give up on
                // it: closing the consumer releases its message to the group, and whatever the handler does with the
                // message when it ends is ignored (see ProcessAsync). Its tokens stay undisposed, as it may still read
                // them.
                _abandoned = true;
                Log.HandlersAbandoned(_logger, Topic, Group, Volatile.Read(ref _running), grace);
                await _consumer.DisposeAsync().ConfigureAwait(false);
                _completion.TrySetResult();
                return;
            }
        }

        await _consumer.DisposeAsync().ConfigureAwait(false);
        _completion.TrySetResult();
        _stopReading.Dispose();
        _abortHandlers.Dispose();
    }

    /// <summary>
    /// The longest disposing waits, once the shutdown timeout has cancelled the handlers' token, for them to end
    /// before it gives up on them (no longer than the shutdown timeout itself).
    /// </summary>
    private static readonly TimeSpan MaxAbortGrace = TimeSpan.FromSeconds(5);

    private async Task ReadLoopAsync()
    {
        try
        {
            var token = _stopReading.Token;
            while (!token.IsCancellationRequested)
            {
                var message = await _consumer.ReceiveAsync(token).ConfigureAwait(false);
                Dispatch(message);
            }
        }
        catch (OperationCanceledException) when (_stopping)
        {
        }
        catch (ObjectDisposedException) when (_stopping)
        {
        }
        catch (Exception ex)
        {
            Log.SubscriptionFailed(_logger, Topic, Group, ex);
            _completion.TrySetException(ex);
        }
        finally
        {
            Finished();
        }
    }

    private void Dispatch(ReceivedMessage message)
    {
        // Read as shutdown began: left unsettled, it goes back to the group when the consumer closes. Handled now, it
        // could overtake an earlier message of its key that the stopping chain left queued (NextOfKey below).
        if (_stopping)
        {
            return;
        }

        if (_options.PerKeyOrdering && message.Key is { } key)
        {
            lock (_busyKeys)
            {
                if (_stopping)
                {
                    return; // checked again under the lock that NextOfKey gives up keys under
                }

                if (_busyKeys.TryGetValue(key, out var waiting))
                {
                    // An earlier message of this key is still in progress: this one waits behind it.
                    (waiting ??= new Queue<ReceivedMessage>()).Enqueue(message);
                    _busyKeys[key] = waiting;
                    return;
                }

                _busyKeys[key] = null;
            }
        }

        Interlocked.Increment(ref _running);
        _ = RunChainAsync(message);
    }

    /// <summary>Handles a message, then (per-key ordering) each message of its key that queued up meanwhile.</summary>
    private async ValueTask RunChainAsync(ReceivedMessage message)
    {
        try
        {
            for (ReceivedMessage? current = message; current is not null; current = NextOfKey(current))
            {
                await ProcessAsync(current).ConfigureAwait(false);
            }
        }
        finally
        {
            Finished();
        }
    }

    private ReceivedMessage? NextOfKey(ReceivedMessage done)
    {
        if (!_options.PerKeyOrdering || done.Key is not { } key)
        {
            return null;
        }

        lock (_busyKeys)
        {
            if (!_stopping && _busyKeys.TryGetValue(key, out var waiting) && waiting is { Count: > 0 })
            {
                return waiting.Dequeue();
            }

            // Stopping: queued messages stay unsettled and are released to the group when the consumer closes.
            _busyKeys.Remove(key);
            return null;
        }
    }

    private void Finished()
    {
        if (Interlocked.Decrement(ref _running) == 0)
        {
            _drained.TrySetResult();
        }
    }

    private async ValueTask ProcessAsync(ReceivedMessage message)
    {
        var started = BusTelemetry.HandlerDuration.Enabled ? Stopwatch.GetTimestamp() : 0;
        // The current activity while the handler runs, so that what it publishes continues the message's trace. A
        // listener that throws (an exporter's bug) costs the span, not the message: left unhandled, it held its key,
        // and every later message of the key, for good.
        Activity? activity;
        try
        {
            activity = TraceContext.StartProcess(_backend, Topic, Group, message);
        }
        catch (Exception ex)
        {
            Log.TracingFailed(_logger, Topic, Group, ex);
            activity = null;
        }

        try
        {
            await _handler(message, _abortHandlers.Token).ConfigureAwait(false);
            if (_abandoned)
            {
                Log.AbandonedHandlerEnded(_logger, Topic, Group, message.MessageId);
                return;
            }

            if (!message.IsSettled)
            {
                await message.AckAsync(CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (_abandoned)
        {
            // Disposing gave up on this handler and released its message to the group: nothing to settle or retry.
            TraceContext.Failed(activity, ex);
            Log.AbandonedHandlerEnded(_logger, Topic, Group, message.MessageId);
        }
        catch (Exception ex) when (!message.IsSettled)
        {
            activity?.AddException(ex);
            if (await RetryOrDeadLetterAsync(message, ex).ConfigureAwait(false) is { } failure)
            {
                TraceContext.Failed(activity, failure, recorded: ReferenceEquals(failure, ex));
            }
        }
        catch (Exception ex)
        {
            // The handler settled the message itself and then threw, or the settlement failed: the backend
            // redelivers whatever was not recorded, so log and keep going.
            TraceContext.Failed(activity, ex);
            Log.HandlerFailedAfterSettlement(_logger, Topic, Group, message.MessageId, ex);
        }
        finally
        {
            if (started != 0)
            {
                BusTelemetry.HandlerDuration.Record(Stopwatch.GetElapsedTime(started).TotalMilliseconds, _tags);
            }

            TraceContext.End(activity);
        }
    }

    /// <summary>Retries in place; returns the last error when the message was not handled in the end (dead-lettered or left to the group), else null.</summary>
    private async ValueTask<Exception?> RetryOrDeadLetterAsync(ReceivedMessage message, Exception first)
    {
        // The pauses between attempts end when the subscription starts stopping: no retry begins after that (see
        // ShouldRetry), so waiting out a pause only delayed disposal, up to the shutdown timeout. The handler itself
        // still gets the token that only the shutdown timeout fires.
        var context = ResilienceContextPool.Shared.Get(_stopReading.Token);
        context.Properties.Set(MessageKey, message);
        Outcome<bool> outcome;
        try
        {
            var state = new RetryState(this, message, first);
            outcome = await _retry.ExecuteOutcomeAsync(
                static async (ctx, s) =>
                {
                    if (s.First is { } pending)
                    {
                        // The first attempt already ran (outside Polly, to keep the success path allocation-free).
                        s.First = null;
                        return Outcome.FromException<bool>(pending);
                    }

                    if (s.Owner._stopping)
                    {
                        // Stopping began as the pause ended.
                        return Outcome.FromException<bool>(new OperationCanceledException(ctx.CancellationToken));
                    }

                    try
                    {
                        await s.Owner._handler(s.Message, s.Owner._abortHandlers.Token).ConfigureAwait(false);
                        return Outcome.FromResult(true);
                    }
                    catch (Exception ex)
                    {
                        return Outcome.FromException<bool>(ex);
                    }
                },
                context,
                state).ConfigureAwait(false);
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }

        try
        {
            if (message.IsSettled || _abandoned)
            {
                return outcome.Exception;
            }

            if (outcome.Exception is null)
            {
                await message.AckAsync(CancellationToken.None).ConfigureAwait(false);
            }
            else if (outcome.Exception is OperationCanceledException && _stopping)
            {
                // Stopping ended the pause before a retry, or the shutdown timeout cancelled the handler: that is no
                // failure of the message, whatever its count. Left unsettled, it goes back to the group when the
                // consumer closes.
                Log.RetryInterruptedByShutdown(_logger, Topic, Group, message.MessageId);
            }
            else if (message.DeliveryCount >= _options.MaxDeliveries)
            {
                var error = outcome.Exception;
                Log.HandlerGaveUp(_logger, Topic, Group, message.MessageId, message.DeliveryCount, error);
                await message.DeadLetterAsync($"{error.GetType().FullName}: {error.Message}", error.ToString(), CancellationToken.None).ConfigureAwait(false);
            }
            else
            {
                // Stopping: leave it unsettled; closing the consumer releases it to the group with its count.
                Log.RetryInterruptedByShutdown(_logger, Topic, Group, message.MessageId);
            }

            return outcome.Exception;
        }
        catch (Exception ex)
        {
            Log.HandlerFailedAfterSettlement(_logger, Topic, Group, message.MessageId, ex);
            return ex;
        }
    }

    private bool ShouldRetry(Exception? error, ResilienceContext context)
        => error is not null
            && !_stopping
            && context.Properties.TryGetValue(MessageKey, out var message)
            && !message.IsSettled
            && message.DeliveryCount < _options.MaxDeliveries;

    private sealed class RetryState(HandlerSubscription owner, ReceivedMessage message, Exception first)
    {
        public HandlerSubscription Owner { get; } = owner;

        public ReceivedMessage Message { get; } = message;

        public Exception? First { get; set; } = first;
    }
}
