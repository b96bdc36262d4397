using System.Collections.Concurrent;
using Bus.Internal;
using Bus.Transport;

namespace Bus;

public sealed partial class MessageBus
{
    private readonly ConcurrentDictionary<string, TaskCompletionSource<ReceivedMessage>> _pendingReplies = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _replyListenerLock = new(1, 1);
    private static readonly TimeSpan ReplyCleanupTimeout = TimeSpan.FromSeconds(5);
    private string? _replyTopic;
    private string? _replyTopicName; // chosen once: a setup that failed is retried under the same name

    /// <inheritdoc />
    public async ValueTask<ReceivedMessage> RequestAsync(string topic, OutgoingMessage request, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        // As publishing: a handler still finishing while the bus is disposed may make a request.
        ThrowIfPublishingClosed();
        ArgumentNullException.ThrowIfNull(request);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(timeout, TimeSpan.Zero);
        if (!Capabilities.Supports(BusFeatures.RequestReply))
        {
            throw new BusException(Capabilities.ExplainMissing(BusFeatures.RequestReply)!, BusFailureReason.NotSupported, Backend, topic);
        }

        var replyTopic = await EnsureReplyListenerAsync(cancellationToken).ConfigureAwait(false);

        // Sent as a copy: the caller's message keeps no correlation id of ours, so that sending it again (a retry after
        // a timeout) gets a new one, and a late reply to the first request cannot complete the second. The reply topic,
        // the same for every request of this bus, is set on both.
        request.ReplyTo = replyTopic;
        var sent = request.Copy();
        sent.CorrelationId = request.CorrelationId ?? MessageIds.New();
        var correlationId = sent.CorrelationId;
        var reply = new TaskCompletionSource<ReceivedMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_pendingReplies.TryAdd(correlationId, reply))
        {
            throw new InvalidOperationException($"A request with correlation id '{correlationId}' is already waiting for its reply.");
        }

        try
        {
            await PublishAsync(topic, sent, cancellationToken).ConfigureAwait(false);
            return await reply.Task.WaitAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            throw new BusException($"{Backend}: no reply to request {correlationId} on topic '{topic}' within {timeout.TotalSeconds:0.###} s", BusFailureReason.Timeout, Backend, topic, isTransient: true, ex);
        }
        finally
        {
            _pendingReplies.TryRemove(correlationId, out _);
        }
    }

    /// <summary>
    /// Core's request/reply emulation: one private reply topic per bus, read by a background consumer that
    /// completes the waiting request with the matching correlation id.
    /// </summary>
    private async ValueTask<string> EnsureReplyListenerAsync(CancellationToken cancellationToken)
    {
        if (_replyTopic is { } ready)
        {
            return ready;
        }

        await _replyListenerLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_replyTopic is { } raced)
            {
                return raced;
            }

            // One topic and one group per bus: on brokers whose groups span topics (Kafka), a shared group name would
            // make every bus's reply consumer rebalance with every other's.
            var replyTopic = _replyTopicName;
            if (replyTopic is null)
            {
                replyTopic = _replyTopicName = "bus-replies-" + MessageIds.New()[..20];
                Transport.RegisterPrivateTopic(replyTopic);
                Transport.RegisterPrivateTopic(Transport.GetDeadLetterTopic(replyTopic));
            }

            var consumer = await CreateConsumerAsync(replyTopic, new SubscriptionOptions { Group = replyTopic, MaxInFlight = 256, PerKeyOrdering = false }, cancellationToken).ConfigureAwait(false);
            _ = Task.Run(() => ListenForRepliesAsync(consumer, replyTopic), CancellationToken.None);
            _replyTopic = replyTopic;
            if (Volatile.Read(ref _disposed) != 0)
            {
                // Disposing began while the listener was being set up and may have missed it: undo it here (deleting
                // twice is harmless).
                await consumer.DisposeAsync().ConfigureAwait(false);
                await DeleteReplyTopicAsync().ConfigureAwait(false);
                ThrowIfDisposed();
            }

            return replyTopic;
        }
        finally
        {
            _replyListenerLock.Release();
        }
    }

    /// <summary>
    /// On dispose, after its consumer has closed: the private reply topic (and its dead-letter topic) belonged to this
    /// bus alone, and left in place one would pile up per process that ever made a request. A bus that ends without
    /// disposing (a crash) still leaves them behind, unless the transport has its broker expire them (see
    /// <see cref="MessageTransport.RegisterPrivateTopic"/>). Also after a setup that failed half way. Bounded by
    /// <see cref="ReplyCleanupTimeout"/>, so that disposing a bus whose broker is gone does not wait long; failures
    /// are logged, never thrown.
    /// </summary>
    private async ValueTask DeleteReplyTopicAsync()
    {
        if (Volatile.Read(ref _replyTopicName) is not { } replyTopic)
        {
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(_options.OperationTimeout < ReplyCleanupTimeout ? _options.OperationTimeout : ReplyCleanupTimeout);
            foreach (var topic in new[]
            {
                new TopicDefinition(replyTopic, new TopicOptions(), [replyTopic], false),
                new TopicDefinition(Transport.GetDeadLetterTopic(replyTopic), new TopicOptions(), [BusDefaults.DeadLetterGroup], true),
            })
            {
                try
                {
                    await Transport.DeleteTopicAsync(topic, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception ex)
                {
                    Log.ReplyTopicNotDeleted(_logger, topic.Name, Backend, ex);
                }
            }
        }
        catch (Exception ex)
        {
            Log.ReplyTopicNotDeleted(_logger, replyTopic, Backend, ex);
        }
    }

    private async Task ListenForRepliesAsync(MessageConsumer consumer, string replyTopic)
    {
        try
        {
            await foreach (var reply in consumer.ReadAllAsync().ConfigureAwait(false))
            {
                if (reply.CorrelationId is { } id && _pendingReplies.TryRemove(id, out var waiting))
                {
                    waiting.TrySetResult(reply);
                }

                try
                {
                    await reply.AckAsync().ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not ObjectDisposedException)
                {
                    // Ending here over one failed ack once left every later request of this bus waiting out its timeout.
                    Log.ReplyAckFailed(_logger, Backend, replyTopic, ex);
                }
            }
        }
        catch (Exception ex) when (Volatile.Read(ref _disposed) == 0)
        {
            Log.ReplyListenerFailed(_logger, Backend, replyTopic, ex);
            await _replyListenerLock.WaitAsync().ConfigureAwait(false);
            try
            {
                if (_replyTopic == replyTopic)
                {
                    _replyTopic = null; // the next request sets the listener up again (same topic and group)
                }
            }
            finally
            {
                _replyListenerLock.Release();
            }

            foreach (var waiting in _pendingReplies.Values)
            {
                waiting.TrySetException(ex);
            }

            await DisposeQuietlyAsync(consumer).ConfigureAwait(false);
        }
    }
}
