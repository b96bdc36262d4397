using System.Collections.Concurrent;
using System.Globalization;
using System.Threading.Channels;
using Amazon.SQS;
using Amazon.SQS.Model;
using Bus.Transport;
using Microsoft.Extensions.Logging;

namespace Bus.Sqs.Internal;

/// <summary>
/// One consumer of a group's queue: long-polling ReceiveMessage loops that never hold more than the subscription's
/// max in-flight unsettled; ack = delete (batched), nack = change visibility; the visibility timeout is the ack
/// timeout. Disposing lets a running long poll finish (cancelling it could strand what it received until the
/// visibility timeout), then makes every unsettled message visible again at once; a server that does not answer is
/// waited for only so long (see <see cref="WaitForLoopsAsync"/>).
/// </summary>
internal sealed class SqsReceiver : TransportReceiver
{
    private const int MaxVisibilitySeconds = 43_200;
    private const int MaxReceiveBatch = 10;

    /// <summary>
    /// How long a receive loop holding part of a batch's credit waits for the rest while messages are in flight:
    /// credit comes back an ack at a time, and a ReceiveMessage for 10 costs little more than one for 1.
    /// </summary>
    private static readonly TimeSpan CreditLinger = TimeSpan.FromMilliseconds(2);

    private readonly SqsTransport _transport;
    private readonly string _topic;
    private readonly string _queueUrl;
    private readonly string _queueName;
    private readonly IAmazonSQS _client;
    private readonly ILogger _logger;
    private readonly Channel<ReceivedMessage> _deliveries = Channel.CreateUnbounded<ReceivedMessage>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
    private readonly ConcurrentDictionary<long, (string Receipt, string SqsId, long ReceivedAt)> _unsettled = new(); // ReceivedAt: Environment.TickCount64 of the receive request
    private readonly SemaphoreSlim _credit;
    private readonly SemaphoreSlim _gathering = new(1, 1);
    private readonly int _receiveBatch;
    private readonly CancellationTokenSource _stop = new();
    private readonly CancellationTokenSource _abandon = new(); // cancels the receives under way: the server did not answer
    private readonly long[] _pollStarted; // per loop: Environment.TickCount64 when its ReceiveMessage was sent, 0 when none is under way
    private readonly ReceiptBatcher _deletes;
    private readonly Task[] _loops;
    private readonly int _visibilitySeconds;
    private readonly bool _fifo;

    /// <summary>
    /// FIFO queues: per message group, the one handed out and the messages received behind it. Only one message per
    /// group is handed out at a time (a batch may hold several of one group); a nack releases the group's held messages
    /// too, so that SQS redelivers the group from the nacked message on, in order.
    /// </summary>
    private readonly Dictionary<string, GroupHold> _held = new(StringComparer.Ordinal);
    private long _nextTag;
    private int _outstanding; // received, credit not yet back (not yet settled)
    private int _disposed;

    public SqsReceiver(SqsTransport transport, string topic, string queueUrl, SubscriptionOptions options)
    {
        _transport = transport;
        _topic = topic;
        _queueUrl = queueUrl;
        _queueName = SqsNames.NameFromUrl(queueUrl);
        _client = transport.Client;
        _logger = transport.Logger;
        _credit = new SemaphoreSlim(options.MaxInFlight, options.MaxInFlight);
        _visibilitySeconds = (int)Math.Clamp(Math.Ceiling(options.AckTimeout.TotalSeconds), 1, MaxVisibilitySeconds);
        _receiveBatch = Math.Min(MaxReceiveBatch, options.MaxInFlight);
        _fifo = SqsNames.IsFifo(_queueName);
        var loops = Math.Min(transport.Settings.ReceiveConcurrency, Math.Max(1, options.MaxInFlight / MaxReceiveBatch));
        _deletes = new ReceiptBatcher(transport, queueUrl, Math.Max(2, loops));
        _loops = new Task[loops];
        _pollStarted = new long[loops];
        for (var i = 0; i < loops; i++)
        {
            var index = i;
            _loops[i] = Task.Run(() => ReceiveLoopAsync(index));
        }
    }

    public override ChannelReader<ReceivedMessage> Deliveries => _deliveries.Reader;

    public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (!_unsettled.TryRemove(message.DeliveryTag, out var entry))
        {
            return default;
        }

        var receipt = entry.Receipt;
        _transport.ForgetUnseen(entry.SqsId);
        if (message.TransportState is string messageGroup)
        {
            HandOutNext(messageGroup, message.DeliveryTag);
        }

        // Settled for the application: its credit is free now, as on Redis, so the next receive need not wait for the
        // delete's round trip (end to end on fauxqs, 0.67 → 0.85 of the raw client's throughput in paired rounds).
        ReturnSettledCredit(1);
        _deletes.Delete(receipt);
        return default;
    }

    public override async ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        if (!_unsettled.TryRemove(message.DeliveryTag, out var entry))
        {
            return;
        }

        var receipt = entry.Receipt;
        var held = message.TransportState is string messageGroup ? TakeHeld(messageGroup, message.DeliveryTag) : null;
        try
        {
            // SQS caps a message's visibility at 12 hours from its receive, not from this change, and refuses a change
            // beyond that (as InvalidParameterValue, which is also how it says a receipt is stale): the delay is cut to
            // what is left of the 12 hours, counted from the receive request (no later than SQS's own start).
            var left = MaxVisibilitySeconds - (long)Math.Ceiling((Environment.TickCount64 - entry.ReceivedAt) / 1000.0);
            var seconds = (int)Math.Clamp(Math.Ceiling(delay.TotalSeconds), 0, Math.Max(0, left));
            await _client.ChangeMessageVisibilityAsync(new ChangeMessageVisibilityRequest { QueueUrl = _queueUrl, ReceiptHandle = receipt, VisibilityTimeout = seconds }, cancellationToken).ConfigureAwait(false);
        }
        catch (AmazonSQSException ex) when (SqsErrors.IsStaleReceipt(ex.ErrorCode))
        {
            Log.StaleReceipt(_logger, _queueName, ex.ErrorCode);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw SqsErrors.Wrap(ex, $"nack on queue {_queueName}", _topic);
        }
        finally
        {
            ReturnSettledCredit(1);
            if (held is not null)
            {
                // After the nacked message's own change: SQS FIFO keeps the group blocked while it is in flight, so
                // these come back behind it, in order.
                await ReleaseAsync(held).ConfigureAwait(false);
            }
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stop.Cancel();
        await WaitForLoopsAsync().ConfigureAwait(false);
        _deliveries.Writer.TryComplete();
        var unseen = new HashSet<long>();
        while (_deliveries.Reader.TryRead(out var buffered))
        {
            unseen.Add(buffered.DeliveryTag);
        }

        lock (_held)
        {
            foreach (var hold in _held.Values)
            {
                foreach (var held in hold.Behind)
                {
                    unseen.Add(held.DeliveryTag);
                }
            }

            _held.Clear();
        }

        await ReleaseUnsettledAsync(unseen).ConfigureAwait(false);
        await _deletes.DisposeAsync().ConfigureAwait(false);
        _stop.Dispose();
        _abandon.Dispose();
    }

    /// <summary>
    /// Waits for the receive loops to end once stopped. A long poll under way is answered by the server within
    /// <see cref="SqsSettings.WaitSeconds"/> of its start and is waited for until then and the transport's
    /// <see cref="SqsTransport.CloseWaits"/> more; past that it is cancelled. Without a bound, a frozen server held the
    /// SDK's request timeout (30 s) times its attempts (4): disposing a bus with a subscription and a pull consumer
    /// against a frozen fauxqs took more than 150 s. Counted from the poll's start, not from here: the loops of the
    /// consumers a bus closes after the first are not waited for again.
    /// </summary>
    private async Task WaitForLoopsAsync()
    {
        var loops = Task.WhenAll(_loops);
        var now = Environment.TickCount64;
        var latest = 0L;
        for (var i = 0; i < _pollStarted.Length; i++)
        {
            latest = Math.Max(latest, Volatile.Read(ref _pollStarted[i]));
        }

        // No poll under way: the loops end at once (one that was just sending is given the budget).
        var until = (latest == 0 ? now : latest + (_transport.Settings.WaitSeconds * 1000L)) + (long)_transport.CloseWaits.Current.TotalMilliseconds;
        try
        {
            await loops.WaitAsync(TimeSpan.FromMilliseconds(Math.Max(0, until - now))).ConfigureAwait(false);
            return;
        }
        catch (TimeoutException)
        {
        }

        _transport.CloseWaits.Unanswered();
        Log.ReceiveAbandoned(_logger, _queueName, Environment.TickCount64 - (latest == 0 ? now : latest) - (_transport.Settings.WaitSeconds * 1000L));
        await _abandon.CancelAsync().ConfigureAwait(false);
        await loops.ConfigureAwait(false); // a cancelled receive ends its loop (the SDK honours the token)
    }

    private async Task ReceiveLoopAsync(int index)
    {
        var token = _stop.Token;
        var failures = 0;
        while (!token.IsCancellationRequested)
        {
            var credit = 0;
            try
            {
                credit = await TakeCreditAsync(token).ConfigureAwait(false);
                token.ThrowIfCancellationRequested(); // stopped meanwhile: no new long poll for disposing to wait out

                // Not cancelled by stopping: a long poll that is cut off may already have taken messages, which would
                // then stay invisible until their visibility timeout. Only a server that does not answer it in time
                // gets it cancelled (see WaitForLoopsAsync).
                var requestedAt = Environment.TickCount64; // no earlier than SQS starts the visibility timeouts
                Volatile.Write(ref _pollStarted[index], requestedAt);
                ReceiveMessageResponse response;
                try
                {
                    response = await _client.ReceiveMessageAsync(new ReceiveMessageRequest
                    {
                        QueueUrl = _queueUrl,
                        MaxNumberOfMessages = credit,
                        WaitTimeSeconds = _transport.Settings.WaitSeconds,
                        VisibilityTimeout = _visibilitySeconds,
                        MessageAttributeNames = ["All"],
                        MessageSystemAttributeNames = ["ApproximateReceiveCount", "SentTimestamp", "SequenceNumber", "MessageGroupId"],
                    }, _abandon.Token).ConfigureAwait(false);
                }
                finally
                {
                    Volatile.Write(ref _pollStarted[index], 0);
                }

                failures = 0;
                _transport.CloseWaits.Answered();
                var messages = response.Messages ?? [];
                Interlocked.Add(ref _outstanding, messages.Count);
                if (_fifo && messages.Count > 0)
                {
                    // Before decoding: what it drops was received and never handed out, which the counts leave out.
                    DropOverrunHolds(messages);
                }

                var deliveries = new ReceivedMessage[messages.Count];
                for (var i = 0; i < messages.Count; i++)
                {
                    var message = messages[i];
                    var tag = Interlocked.Increment(ref _nextTag);
                    try
                    {
                        deliveries[i] = SqsEnvelope.Decode(_topic, message, tag, _fifo ? GroupOf(message) : null, _transport.UnseenReleases(message.MessageId));
                    }
                    catch (Exception)
                    {
                        // Unreadable (not from Bus, or corrupted), whatever the decoder threw: deliver the raw text so it
                        // can be dead-lettered, not lost. An exception let through here dropped the whole batch, which
                        // came back and failed together until SQS's redrive took every message of it, unseen.
                        deliveries[i] = new ReceivedMessage(_topic, System.Text.Encoding.UTF8.GetBytes(message.Body ?? ""), null, null, message.MessageId, null, null, null, 1, message.MessageId, DateTimeOffset.UtcNow, tag, _fifo ? GroupOf(message) : null);
                    }
                }

                // One batch is distributed as a whole: a settlement of its first message of a group (which takes the
                // same lock) must see the rest of the batch held behind it.
                lock (_held)
                {
                    for (var i = 0; i < deliveries.Length; i++)
                    {
                        var delivery = deliveries[i];
                        _unsettled[delivery.DeliveryTag] = (messages[i].ReceiptHandle, messages[i].MessageId, requestedAt);
                        if (delivery.TransportState is string messageGroup)
                        {
                            if (_held.TryGetValue(messageGroup, out var hold))
                            {
                                // Behind an earlier message of this batch, or behind one the application holds within
                                // its ack timeout (see DropOverrunHolds): handed out in turn, never two at once.
                                hold.Behind.Enqueue(delivery);
                                continue;
                            }

                            _held[messageGroup] = new GroupHold(delivery.DeliveryTag, requestedAt);
                        }

                        _deliveries.Writer.TryWrite(delivery);
                    }
                }

                if (messages.Count < credit)
                {
                    _credit.Release(credit - messages.Count);
                }

                credit = 0;
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                ReturnCredit(credit);
                break;
            }
            catch (QueueDoesNotExistException ex)
            {
                ReturnCredit(credit);
                _deliveries.Writer.TryComplete(new BusException($"sqs: the queue {_queueName} of topic '{_topic}' was deleted", BusFailureReason.BrokerError, SqsTransportFactory.BackendName, _topic, false, ex));
                break;
            }
            catch (Exception ex)
            {
                ReturnCredit(credit);
                failures++;
                var delay = TimeSpan.FromMilliseconds(Math.Min(5000, 100 * (1 << Math.Min(failures, 6))));
                Log.ReceiveFailed(_logger, _queueName, (long)delay.TotalMilliseconds, ex);
                try
                {
                    await Task.Delay(delay, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
        }
    }

    /// <summary>
    /// Credit for one ReceiveMessage: at least 1, up to a full batch. One loop gathers at a time, so that credit
    /// coming back is not split into small receives across loops; while messages are out (more credit will come back
    /// soon) it waits up to <see cref="CreditLinger"/> for a full batch.
    /// </summary>
    private async ValueTask<int> TakeCreditAsync(CancellationToken token)
    {
        await _gathering.WaitAsync(token).ConfigureAwait(false);
        var credit = 0;
        try
        {
            await _credit.WaitAsync(token).ConfigureAwait(false);
            credit = 1;
            var until = 0L;
            while (credit < _receiveBatch)
            {
                if (_credit.Wait(0))
                {
                    credit++;
                    continue;
                }

                if (Volatile.Read(ref _outstanding) <= 0)
                {
                    break; // nothing received is unsettled: no credit is coming back
                }

                var now = System.Diagnostics.Stopwatch.GetTimestamp();
                until = until == 0 ? now + (long)(CreditLinger.TotalSeconds * System.Diagnostics.Stopwatch.Frequency) : until;
                var remaining = System.Diagnostics.Stopwatch.GetElapsedTime(now, until);
                if (remaining <= TimeSpan.Zero || !await _credit.WaitAsync(remaining, token).ConfigureAwait(false))
                {
                    break;
                }

                credit++;
            }

            return credit;
        }
        catch
        {
            ReturnCredit(credit);
            throw;
        }
        finally
        {
            _gathering.Release();
        }
    }

    /// <summary>Credit of received messages that are settled (or released) comes back.</summary>
    private void ReturnSettledCredit(int count)
    {
        Interlocked.Add(ref _outstanding, -count);
        _credit.Release(count);
    }

    private void ReturnCredit(int credit)
    {
        if (credit > 0)
        {
            _credit.Release(credit);
        }
    }

    private static string GroupOf(Message message)
        => message.Attributes is { } attributes && attributes.TryGetValue("MessageGroupId", out var group) ? group : "";

    /// <summary>
    /// A message of <paramref name="messageGroup"/> was acked: when it is the one the group's hold handed out, hand out
    /// the next one held behind it. An expired delivery settled late (its group was delivered again since) has no say.
    /// </summary>
    private void HandOutNext(string messageGroup, long deliveryTag)
    {
        lock (_held)
        {
            if (!_held.TryGetValue(messageGroup, out var hold) || hold.HandedOutTag != deliveryTag)
            {
                return;
            }

            if (hold.Behind.Count == 0)
            {
                _held.Remove(messageGroup);
                return;
            }

            var next = hold.Behind.Dequeue();
            hold.HandedOut(next.DeliveryTag, Environment.TickCount64);
            _deliveries.Writer.TryWrite(next);
        }
    }

    /// <summary>
    /// A message of <paramref name="messageGroup"/> was nacked: when it is the one the group's hold handed out, take
    /// the ones held behind it, to release them.
    /// </summary>
    private List<string> TakeHeld(string messageGroup, long deliveryTag)
    {
        var receipts = new List<string>();
        lock (_held)
        {
            if (_held.TryGetValue(messageGroup, out var hold) && hold.HandedOutTag == deliveryTag)
            {
                _held.Remove(messageGroup);
                ForgetHeld(hold, receipts);
            }
        }

        return receipts;
    }

    /// <summary>
    /// Settles for good the deliveries held behind <paramref name="hold"/>'s one (never handed out, so not counted as
    /// deliveries), adding their receipts to <paramref name="receipts"/> when given. Under the lock of <see cref="_held"/>.
    /// </summary>
    private void ForgetHeld(GroupHold hold, List<string>? receipts)
    {
        foreach (var held in hold.Behind)
        {
            if (_unsettled.TryRemove(held.DeliveryTag, out var entry))
            {
                receipts?.Add(entry.Receipt);
                _transport.NoteUnseen(entry.SqsId);
                ReturnSettledCredit(1);
            }
        }
    }

    /// <summary>
    /// A receive brought messages of groups this consumer holds: where the application has kept the group's delivery
    /// for longer than the ack timeout, forgets the group's hold, so that the new delivery is handed out rather than
    /// held behind the expired one until the application settles it, however long its handler hangs.
    /// </summary>
    /// <remarks>
    /// SQS FIFO returns messages of a group only while none of it is in flight, so receiving one means every receipt
    /// of the hold has run out of visibility. That alone does not mean the application overran: a message held behind
    /// others starts its visibility timeout at the receive, not when it is handed out, and may run out while the
    /// application is within its ack timeout. Then the new deliveries queue behind (the application gets the message
    /// again after it, at least once, but never two of a group at once). The held deliveries dropped were never handed
    /// to the application: nobody settles them, and the delivery counts leave them out.
    /// </remarks>
    private void DropOverrunHolds(List<Message> messages)
    {
        var now = Environment.TickCount64;
        lock (_held)
        {
            foreach (var message in messages)
            {
                var group = GroupOf(message);
                if (!_held.TryGetValue(group, out var hold) || now - hold.HandedOutAt < _visibilitySeconds * 1000L)
                {
                    continue;
                }

                _held.Remove(group);
                ForgetHeld(hold, receipts: null);
            }
        }
    }

    /// <summary>A FIFO group's delivery handed out to the application, since when, and those received behind it.</summary>
    private sealed class GroupHold(long handedOutTag, long handedOutAt)
    {
        public long HandedOutTag { get; private set; } = handedOutTag;

        /// <summary>Environment.TickCount64 when the application's lease began: the receive for a batch's first message of the group, else its hand-out.</summary>
        public long HandedOutAt { get; private set; } = handedOutAt;

        public Queue<ReceivedMessage> Behind { get; } = new();

        public void HandedOut(long tag, long at)
        {
            HandedOutTag = tag;
            HandedOutAt = at;
        }
    }

    /// <summary>Makes every message received and not settled visible again now (ChangeMessageVisibility 0).</summary>
    /// <param name="unseen">Deliveries never handed to the application (buffered or held): releasing them must not count as a delivery.</param>
    private async Task ReleaseUnsettledAsync(HashSet<long> unseen)
    {
        // Bounded like the loops: the SDK would wait for a server that does not answer its timeout (30 s) per attempt.
        using var budget = new CancellationTokenSource(_transport.CloseWaits.Current);
        var receipts = new List<string>();
        foreach (var tag in _unsettled.Keys)
        {
            if (_unsettled.TryRemove(tag, out var entry))
            {
                receipts.Add(entry.Receipt);
                if (unseen.Contains(tag))
                {
                    _transport.NoteUnseen(entry.SqsId);
                }
            }
        }

        if (!await ReleaseAsync(receipts, budget.Token).ConfigureAwait(false) && budget.IsCancellationRequested)
        {
            _transport.CloseWaits.Unanswered();
        }
    }

    /// <summary>Makes the messages of <paramref name="receipts"/> visible again now; false (and a warning) if that failed.</summary>
    private async Task<bool> ReleaseAsync(List<string> receipts, CancellationToken cancellationToken = default)
    {
        if (receipts.Count == 0)
        {
            return true;
        }

        try
        {
            var batches = receipts.Chunk(10).Select(chunk => _client.ChangeMessageVisibilityBatchAsync(new ChangeMessageVisibilityBatchRequest
            {
                QueueUrl = _queueUrl,
                Entries = chunk.Select((receipt, i) => new ChangeMessageVisibilityBatchRequestEntry { Id = EntryIds.Of(i), ReceiptHandle = receipt, VisibilityTimeout = 0 }).ToList(),
            }, cancellationToken));
            await Task.WhenAll(batches).ConfigureAwait(false);
            Log.Released(_logger, receipts.Count, _queueName);
            return true;
        }
        catch (Exception ex)
        {
            Log.ReleaseFailed(_logger, receipts.Count, _queueName, ex);
            return false;
        }
    }
}
