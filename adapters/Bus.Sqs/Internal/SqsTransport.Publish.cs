using System.Globalization;
using Amazon.SQS;
using Amazon.SQS.Model;
using Bus.Transport;

namespace Bus.Sqs.Internal;

internal sealed partial class SqsTransport
{
    /// <summary>SendMessageBatch takes at most 10 entries.</summary>
    internal const int BatchSize = 10;

    /// <summary>Standard queues: batches of one queue sent at once.</summary>
    private const int BatchesInFlight = 8;

    /// <summary>The longest per-message delay SQS supports: 15 minutes.</summary>
    internal static readonly TimeSpan MaxDelay = TimeSpan.FromSeconds(900);

    public override async ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        var encoded = Encode(topic, message);
        var queues = await Groups.GetQueuesAsync(topic, cancellationToken).ConfigureAwait(false);
        if (queues.Length == 0)
        {
            Log.NoGroups(Logger, message.MessageId!, topic);
            return;
        }

        if (queues.Length == 1)
        {
            await SendAsync(topic, queues[0], encoded, cancellationToken).ConfigureAwait(false);
            return;
        }

        // Fan-out: one send per group queue. Not atomic: if one fails, the others may have the message.
        var sends = new Task[queues.Length];
        for (var i = 0; i < queues.Length; i++)
        {
            sends[i] = SendAsync(topic, queues[i], encoded, cancellationToken);
        }

        await Task.WhenAll(sends).ConfigureAwait(false);
    }

    public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        // What can refuse the batch is checked before anything is sent; encoding waits for each SendMessageBatch's turn.
        // Encoded up front, a batch of 4,096 held about 14 MB of strings and requests alive through every collection
        // while it was sent, and each such collection paused the process for ~27 ms (against ~5 ms for a raw client
        // that builds each request when it sends it).
        for (var i = 0; i < messages.Count; i++)
        {
            DelaySecondsOf(topic, messages[i]);
        }

        var queues = await Groups.GetQueuesAsync(topic, cancellationToken).ConfigureAwait(false);
        if (queues.Length == 0)
        {
            Log.NoGroups(Logger, messages.Count == 0 ? "" : messages[0].MessageId!, topic);
            return;
        }

        var chunks = new LazyChunks(i => Encode(topic, messages[i]), messages.Count, queues.Length, cancellationToken);
        var accepted = new Acceptances(confirmations, queues.Length);
        var perQueue = new Task[queues.Length];
        for (var q = 0; q < queues.Length; q++)
        {
            perQueue[q] = SendChunksAsync(topic, queues[q], chunks, accepted, IsFifo(topic), cancellationToken);
        }

        await Task.WhenAll(perQueue).ConfigureAwait(false);
    }

    private async Task SendChunksAsync(string topic, string queueUrl, LazyChunks chunks, Acceptances accepted, bool fifo, CancellationToken cancellationToken)
    {
        if (fifo)
        {
            // FIFO order across batches needs each batch confirmed before the next is sent.
            for (var index = 0; chunks.Take(index) is { } chunk; index++)
            {
                await SendBatchAsync(topic, queueUrl, chunk, accepted, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        using var window = new SemaphoreSlim(BatchesInFlight);
        var sends = new List<Task>();
        try
        {
            for (var index = 0; ; index++)
            {
                await window.WaitAsync(cancellationToken).ConfigureAwait(false);
                if (chunks.Take(index) is not { } chunk)
                {
                    break;
                }

                sends.Add(Release(SendBatchAsync(topic, queueUrl, chunk, accepted, cancellationToken), window));
            }
        }
        finally
        {
            // Also when cancelled: the window outlives every send that releases it.
            await Task.WhenAll(sends).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }

        await Task.WhenAll(sends).ConfigureAwait(false);

        static async Task Release(Task send, SemaphoreSlim window)
        {
            try
            {
                await send.ConfigureAwait(false);
            }
            finally
            {
                window.Release();
            }
        }
    }

    /// <summary>
    /// Which messages of a batch every group queue has accepted: a message is confirmed once each queue's
    /// SendMessageBatch has listed it as successful (or the queue is gone, and with it the group).
    /// </summary>
    private sealed class Acceptances(BatchConfirmations confirmations, int queues)
    {
        private readonly int[]? _perMessage = queues > 1 ? new int[confirmations.Count] : null;

        public void Accepted(int index)
        {
            if (_perMessage is null || Interlocked.Increment(ref _perMessage[index]) == queues)
            {
                confirmations.Confirm(index);
            }
        }
    }

    /// <summary>Consecutive messages of a batch, encoded for one SendMessageBatch; <paramref name="Start"/> is the first one's index in the batch.</summary>
    internal readonly record struct Chunk(Encoded[] Messages, int Start);

    /// <summary>
    /// A batch's <paramref name="count"/> messages cut into SendMessageBatch requests (at most 10 messages and 262,144
    /// bytes in all, SQS's batch limits) as the senders ask for them, in order, each encoded (<paramref name="encode"/>,
    /// by index) when its chunk is cut; a chunk is let go once every group queue (<paramref name="takers"/>) has taken
    /// it. Once <paramref name="cancellationToken"/> is cancelled (the caller gave up, and may reuse its messages) no
    /// message is read any more.
    /// </summary>
    internal sealed class LazyChunks(Func<int, Encoded> encode, int count, int takers, CancellationToken cancellationToken)
    {
        private readonly Lock _sync = new();
        private readonly List<(Encoded[]? Chunk, int Start, int Taken)> _chunks = [];
        private readonly List<Encoded> _current = new(BatchSize);
        private Encoded? _carried; // encoded, and over the previous chunk's byte limit
        private int _encoded;

        /// <summary>The chunk at <paramref name="index"/> (each taker asks for each index once, in order), or null past the end.</summary>
        public Chunk? Take(int index)
        {
            lock (_sync)
            {
                cancellationToken.ThrowIfCancellationRequested();
                while (_chunks.Count <= index && (_carried is not null || _encoded < count))
                {
                    var start = _encoded - (_carried is null ? 0 : 1);
                    _chunks.Add((Cut(), start, 0));
                }

                if (index >= _chunks.Count)
                {
                    return null;
                }

                var (chunk, first, taken) = _chunks[index];
                _chunks[index] = (++taken == takers ? null : chunk, first, taken);
                return new Chunk(chunk!, first);
            }
        }

        private Encoded[] Cut()
        {
            _current.Clear();
            long size = 0;
            while (_current.Count < BatchSize && (_carried is not null || _encoded < count))
            {
                var message = _carried ?? encode(_encoded++);
                _carried = null;
                if (_current.Count > 0 && size + message.WireSize > SqsEnvelope.WireLimit)
                {
                    _carried = message; // starts the next chunk
                    break;
                }

                _current.Add(message);
                size += message.WireSize;
            }

            return [.. _current];
        }
    }

    private async Task SendAsync(string topic, string queueUrl, Encoded message, CancellationToken cancellationToken)
    {
        var request = new SendMessageRequest
        {
            QueueUrl = queueUrl,
            MessageBody = message.Body,
            MessageAttributes = new Dictionary<string, MessageAttributeValue>(1, StringComparer.Ordinal) { [SqsEnvelope.AttributeName] = SqsEnvelope.Attribute(message.Attribute) },
        };
        if (message.DelaySeconds > 0)
        {
            request.DelaySeconds = message.DelaySeconds;
        }

        if (message.GroupId is not null)
        {
            request.MessageGroupId = message.GroupId;
            request.MessageDeduplicationId = message.DeduplicationId;
        }

        try
        {
            await Client.SendMessageAsync(request, cancellationToken).ConfigureAwait(false);
        }
        catch (QueueDoesNotExistException)
        {
            // The group's queue was deleted: the group is gone, nothing to deliver to.
            ForgetQueue(topic, queueUrl);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw SqsErrors.Wrap(ex, $"publish to queue {SqsNames.NameFromUrl(queueUrl)}", topic);
        }
    }

    private async Task SendBatchAsync(string topic, string queueUrl, Chunk taken, Acceptances accepted, CancellationToken cancellationToken)
    {
        var chunk = taken.Messages;
        var entries = new List<SendMessageBatchRequestEntry>(chunk.Length);
        for (var i = 0; i < chunk.Length; i++)
        {
            var message = chunk[i];
            var entry = new SendMessageBatchRequestEntry
            {
                Id = EntryIds.Of(i),
                MessageBody = message.Body,
                MessageAttributes = new Dictionary<string, MessageAttributeValue>(1, StringComparer.Ordinal) { [SqsEnvelope.AttributeName] = SqsEnvelope.Attribute(message.Attribute) },
            };
            if (message.DelaySeconds > 0)
            {
                entry.DelaySeconds = message.DelaySeconds;
            }

            if (message.GroupId is not null)
            {
                entry.MessageGroupId = message.GroupId;
                entry.MessageDeduplicationId = message.DeduplicationId;
            }

            entries.Add(entry);
        }

        SendMessageBatchResponse response;
        try
        {
            response = await Client.SendMessageBatchAsync(new SendMessageBatchRequest { QueueUrl = queueUrl, Entries = entries }, cancellationToken).ConfigureAwait(false);
        }
        catch (QueueDoesNotExistException)
        {
            // The group's queue was deleted: the group is gone, nothing to deliver to.
            ForgetQueue(topic, queueUrl);
            for (var i = 0; i < chunk.Length; i++)
            {
                accepted.Accepted(taken.Start + i);
            }

            return;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw SqsErrors.Wrap(ex, $"publish batch to queue {SqsNames.NameFromUrl(queueUrl)}", topic);
        }

        if (response.Successful is { } successful)
        {
            var seen = 0; // an entry listed twice counts once (at most 10 entries: one bit each)
            foreach (var entry in successful)
            {
                if (int.TryParse(entry.Id, NumberStyles.None, CultureInfo.InvariantCulture, out var i) && (uint)i < (uint)chunk.Length && (seen & (1 << i)) == 0)
                {
                    seen |= 1 << i;
                    accepted.Accepted(taken.Start + i);
                }
            }
        }

        if (response.Failed is { Count: > 0 } failed)
        {
            var first = failed[0];
            throw new BusException(
                $"sqs: {failed.Count} of {chunk.Length} messages of a batch to queue {SqsNames.NameFromUrl(queueUrl)} (topic '{topic}') were not accepted: {first.Code}: {first.Message}",
                BusFailureReason.PublishNotConfirmed, SqsTransportFactory.BackendName, topic, isTransient: first.SenderFault != true);
        }
    }

    private Encoded Encode(string topic, OutgoingMessage message)
    {
        var delaySeconds = DelaySecondsOf(topic, message);
        var (body, attribute, _) = SqsEnvelope.Encode(message);
        var wireSize = System.Text.Encoding.UTF8.GetByteCount(body) + SqsEnvelope.AttributeName.Length + "String".Length + attribute.Length;
        string? groupId = null, deduplicationId = null;
        if (IsFifo(topic))
        {
            // Key → message group (order per key); no key → the message id (no ordering constraint).
            groupId = SqsNames.FifoId(string.IsNullOrEmpty(message.Key) ? message.MessageId! : message.Key);
            // By default a fresh id per publish call (SDK retries of the call reuse it, so they are not duplicated);
            // with deduplication=message-id, the message id, so SQS drops a repeat within 5 minutes — which also drops
            // a redrive of the message within 5 minutes of its first publish, hence opt-in.
            // Random.Shared rather than Guid.NewGuid: NewGuid reads /dev/urandom, a system call per message (1.7 µs here).
            deduplicationId = Settings.DeduplicateByMessageId ? SqsNames.FifoId(message.MessageId!) : NewDeduplicationId();
        }

        return new Encoded(body, attribute, wireSize, delaySeconds, groupId, deduplicationId);
    }

    /// <summary>The message's delay in whole seconds (rounded up: never earlier than asked), or why SQS cannot take it.</summary>
    private int DelaySecondsOf(string topic, OutgoingMessage message)
    {
        if (message.Delay is not { } delay || delay <= TimeSpan.Zero)
        {
            return 0;
        }

        if (delay > MaxDelay)
        {
            throw new BusException($"sqs: a delay of {delay.TotalSeconds:0.###} s for topic '{topic}' exceeds SQS's maximum of 900 s (15 minutes).", BusFailureReason.NotSupported, SqsTransportFactory.BackendName, topic);
        }

        if (IsFifo(topic))
        {
            throw new BusException($"sqs: topic '{topic}' is FIFO; SQS FIFO queues do not support a delay per message.", BusFailureReason.NotSupported, SqsTransportFactory.BackendName, topic);
        }

        return (int)Math.Ceiling(delay.TotalSeconds);
    }

    /// <summary>32 random hex digits: unique enough for SQS's 5-minute deduplication window; not a secret.</summary>
    private static string NewDeduplicationId()
    {
        Span<byte> bytes = stackalloc byte[16];
        Random.Shared.NextBytes(bytes);
        return Convert.ToHexStringLower(bytes);
    }

    internal readonly record struct Encoded(string Body, string Attribute, long WireSize, int DelaySeconds, string? GroupId, string? DeduplicationId);
}
