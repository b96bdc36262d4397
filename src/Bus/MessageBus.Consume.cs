using Bus.Internal;

namespace Bus;

public sealed partial class MessageBus
{
    /// <inheritdoc />
    public async ValueTask<MessageConsumer> CreateConsumerAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ValidateTopic(topic);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(Backend, topic);
        var copy = options.Clone();
        ThrowIfStartUnsupported(topic, copy.StartPosition);

        await EnsureReadyAsync(topic, cancellationToken).ConfigureAwait(false);
        var deadLetterTopic = copy.DeadLetterTopic ?? Transport.GetDeadLetterTopic(topic);
        if (copy.DeadLetterTopic is not null)
        {
            ValidateTopic(deadLetterTopic);
            await EnsureDeadLetterTopicAsync(deadLetterTopic, topic, cancellationToken).ConfigureAwait(false);
        }

        Bus.Transport.TransportReceiver receiver;
        Task<Bus.Transport.TransportReceiver>? opening = null;
        try
        {
            opening = Transport.OpenReceiverAsync(topic, copy, cancellationToken).AsTask();
            receiver = await opening.WaitAsync(_options.OperationTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            CloseIfOpenedLater(opening);
            throw new BusException($"{Backend}: joining group '{copy.Group}' on topic '{topic}' did not complete within {_options.OperationTimeout.TotalSeconds:0.#} s", BusFailureReason.Timeout, Backend, topic, isTransient: true, ex);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            CloseIfOpenedLater(opening);
            throw Wrap(ex, $"joining group '{copy.Group}'", topic);
        }
        catch (OperationCanceledException)
        {
            CloseIfOpenedLater(opening);
            throw;
        }

        var consumer = new MessageConsumer(this, receiver, topic, deadLetterTopic, copy, _logger);
        _live.TryAdd(consumer, 0);
        await CloseIfDisposingAsync(consumer).ConfigureAwait(false);
        return consumer;
    }

    /// <summary>
    /// After something opened while joining was added to what disposing closes: when disposing began meanwhile, it may
    /// have closed what it knew of without it, so it is closed here and the call fails as on a disposed bus.
    /// </summary>
    private async ValueTask CloseIfDisposingAsync(IAsyncDisposable opened)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            await opened.DisposeAsync().ConfigureAwait(false);
            ThrowIfDisposed();
        }
    }

    /// <summary>
    /// Joining was given up on (timeout, cancellation) while the transport may still be joining: a receiver it opens
    /// after all belongs to nobody, and would hold its share of the group (Kafka partitions, a RabbitMQ consumer's
    /// prefetch) for as long as the process lives. It is closed as soon as it is open.
    /// </summary>
    private void CloseIfOpenedLater(Task<Bus.Transport.TransportReceiver>? opening)
    {
        if (opening is null)
        {
            return;
        }

        _ = CloseWhenOpenedAsync(opening, _logger, Backend);

        static async Task CloseWhenOpenedAsync(Task<Bus.Transport.TransportReceiver> opening, Microsoft.Extensions.Logging.ILogger logger, string backend)
        {
            Bus.Transport.TransportReceiver receiver;
            try
            {
                receiver = await opening.ConfigureAwait(false);
            }
            catch (Exception)
            {
                return; // it did not open: nothing to close (the caller has its error)
            }

            try
            {
                await receiver.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.AbandonedReceiverCloseFailed(logger, backend, ex);
            }
        }
    }

    /// <inheritdoc />
    public async ValueTask<ISubscription> SubscribeAsync(string topic, Func<ReceivedMessage, CancellationToken, ValueTask> handler, SubscriptionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(handler);
        var consumer = await CreateConsumerAsync(topic, options, cancellationToken).ConfigureAwait(false);
        HandlerSubscription subscription;
        try
        {
            subscription = new HandlerSubscription(consumer, handler, _logger, Backend);
        }
        catch
        {
            await consumer.DisposeAsync().ConfigureAwait(false); // it joined the group: leave it again
            throw;
        }

        _live.TryRemove(consumer, out _);
        _live.TryAdd(subscription, 0);
        _ = subscription.Completion.ContinueWith(static (_, state) => { var (bus, sub) = ((MessageBus, ISubscription))state!; bus.Forget(sub); }, (this, (ISubscription)subscription), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        subscription.Start();
        await CloseIfDisposingAsync(subscription).ConfigureAwait(false);
        return subscription;
    }

    /// <inheritdoc />
    public async ValueTask<int> RedriveAsync(string topic, RedriveOptions? options = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ValidateTopic(topic);
        options ??= new RedriveOptions();
        var deadLetterTopic = options.DeadLetterTopic ?? Transport.GetDeadLetterTopic(topic);
        // No more prefetched than will be moved: closing the consumer returns what it took and did not move, and a
        // backend that counts deliveries (quorum queues, SQS, memory://) counts one for each, so redriving one message
        // at a time would count deliveries against the rest until they went to the dead-letter topic's own one.
        var prefetch = Math.Clamp(options.MaxMessages ?? 64, 1, 64);
        var consumer = await CreateConsumerAsync(deadLetterTopic, new SubscriptionOptions { Group = BusDefaults.DeadLetterGroup, MaxInFlight = prefetch, PerKeyOrdering = false }, cancellationToken).ConfigureAwait(false);
        var moved = 0;
        await using (consumer.ConfigureAwait(false))
        {
            while (options.MaxMessages is not { } max || moved < max)
            {
                ReceivedMessage deadLetter;
                using (var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken))
                {
                    idle.CancelAfter(options.IdleTimeout);
                    try
                    {
                        deadLetter = await consumer.ReceiveAsync(idle.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        break;
                    }
                }

                var target = deadLetter.Headers.TryGetValue(DeadLetterHeaders.OriginalTopic, out var original) ? original : topic;
                await PublishAsync(target, DeadLetterCopy.ForRedrive(deadLetter), cancellationToken).ConfigureAwait(false);
                await deadLetter.AckAsync(cancellationToken).ConfigureAwait(false);
                moved++;
            }
        }

        Log.Redriven(_logger, moved, deadLetterTopic);
        return moved;
    }

    private void ThrowIfStartUnsupported(string topic, StartPosition start)
    {
        var needed = start.Kind switch
        {
            StartPositionKind.Earliest => BusFeatures.Replay,
            StartPositionKind.Position => BusFeatures.ReplayFromPosition,
            StartPositionKind.Time => BusFeatures.ReplayFromTime,
            _ => BusFeatures.None,
        };

        if (!Capabilities.Supports(needed))
        {
            throw new BusException(Capabilities.ExplainMissing(needed)!, BusFailureReason.NotSupported, Backend, topic);
        }
    }
}
