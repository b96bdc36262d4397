using System.Threading.Channels;
using Bus.Transport;
using Confluent.Kafka;

namespace Bus.Kafka.Internal;

/// <summary>
/// One member of a Kafka consumer group. A dedicated thread polls the consumer (and so serves rebalances); records go
/// into a local backlog and are handed out while fewer than max in-flight are unsettled. With per-key ordering, a key
/// has at most one message out at a time: its later messages wait, and a nacked message is redelivered before them.
/// Acknowledgements advance each partition's contiguous acknowledged prefix (<see cref="PartitionOffsets"/>), which the
/// poll thread stores (once per partition per poll, not per acknowledgement) and librdkafka auto-commits; on revocation
/// and close the stored offsets are committed and everything unacknowledged is left for the partition's next owner.
/// </summary>
internal sealed class KafkaReceiver : TransportReceiver
{
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan BrokerCallTimeout = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Records the poll thread takes from librdkafka's already-fetched queue before it takes the lock once for all of
    /// them: per record, the lock was contended by every acknowledgement (a quarter of the process's managed CPU was
    /// spent spinning for it in a profile of the end-to-end benchmark).
    /// </summary>
    private const int IntakeBatch = 256;

    /// <summary>
    /// How long closing polls after unsubscribing for the revocation to be served (see <see cref="LeaveGroup"/>). A
    /// revocation comes at the next poll when the member is steady; a rebalance under way has to finish first.
    /// </summary>
    private static readonly TimeSpan LeaveWait = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan RevocationWaitSlice = TimeSpan.FromMilliseconds(50);

    private readonly KafkaTransport _transport;
    private readonly string _topic;
    private readonly SubscriptionOptions _options;
    private readonly bool _durable;
    private readonly Channel<ReceivedMessage> _channel = Channel.CreateUnbounded<ReceivedMessage>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
    private readonly TaskCompletionSource _established = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<int, TopicPartitionOffset> _newGroupStarts = []; // poll thread only: resolved, not yet committed
    private readonly object _sync = new();
    private readonly Dictionary<int, PartitionState> _partitions = [];
    private readonly LinkedList<Record> _backlog = new();
    private readonly PriorityQueue<Record, long> _retry = new();              // nacked, due now: oldest offset first
    private readonly List<(Record Record, long DueTicks)> _delayed = [];       // nacked with a delay
    private readonly List<Record> _intake = new(IntakeBatch);                // poll thread only
    private readonly List<(int Partition, long Offset)> _storing = [];      // poll thread only
    private readonly DeliveryCounts<(int Partition, long Offset)>.Scope _counts;
    private TimeSpan _revocationWait;
    private readonly int _bufferLimit;
    private readonly long _bufferByteLimit;
    private long _bufferedBytes;
    private IConsumer<byte[]?, byte[]?>? _consumer;
    private Thread? _thread;
    private int _unsettled;
    private int _held;
    private bool _paused;
    private bool _assignedOnce;
    private bool _holdingAssignment;  // poll thread only: an assignment was accepted and not yet revoked or lost
    private volatile bool _closing;   // set before consumer.Close(): rebalance callbacks then make no broker calls
    private bool _leaving;            // poll thread only: closing (after a dispose or a failure); revocations do not wait for handlers
    private int _disposed;
    private volatile string _step = "starting"; // what the poll thread is doing, for the close warning

    public KafkaReceiver(KafkaTransport transport, string topic, SubscriptionOptions options, bool durable)
    {
        _transport = transport;
        _topic = topic;
        _options = options;
        _durable = durable;
        _counts = transport.Counts.For(options.Group, topic);
        // The local backlog (fetched, not yet handed out) is bounded; fetching pauses above it and resumes at half.
        // Generous, because every pause discards librdkafka's prefetched data and a resume costs a fetch round trip.
        _bufferLimit = Math.Max(options.MaxInFlight * 4, 10_000);
        _bufferByteLimit = 32L * 1024 * 1024;
    }

    public override ChannelReader<ReceivedMessage> Deliveries => _channel.Reader;

    private string Group => _options.Group;

    /// <summary>Joins the group and returns once the consumer has its partitions and their start positions.</summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var config = _transport.ConsumerConfig(Group);
        // The ack timeout, capped twice: a member joining waits for this wait and then for the rejoin, within its own
        // operation timeout (the same setting, as a rule), so half of it; and beyond max.poll.interval.ms the group
        // would expel this member for not polling, so half of that too.
        _revocationWait = TimeSpan.FromMilliseconds(Math.Min(
            Math.Min(_options.AckTimeout.TotalMilliseconds, _transport.OperationTimeout.TotalMilliseconds / 2),
            (config.MaxPollIntervalMs ?? 300_000) / 2.0));
        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(config)
            .SetLogHandler((_, message) => Log.Client(_transport.Logger, "consumer " + Group, message))
            .SetErrorHandler((_, error) => Log.ClientError(_transport.Logger, "consumer " + Group, error.Code.ToString(), error.Reason))
            .SetPartitionsAssignedHandler(OnAssigned)
            .SetPartitionsRevokedHandler((consumer, revoked) => OnRevoked(consumer, revoked, lost: false))
            .SetPartitionsLostHandler((consumer, lost) => OnRevoked(consumer, lost, lost: true))
            .Build();
        _consumer.Subscribe(_topic);
        _thread = new Thread(PollLoop) { IsBackground = true, Name = $"bus-kafka {_topic}/{Group}" };
        _thread.Start();
        await _established.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (message.TransportState is not Record record)
        {
            return default;
        }

        lock (_sync)
        {
            if (!record.TrySettle())
            {
                return default;
            }

            _unsettled--;
            var state = record.Partition;
            Settled(state);
            if (!state.Revoked)
            {
                _counts.Done((state.Id, record.Offset));
                if (state.Offsets.Ack(record.Offset) is { } committable)
                {
                    // Stored by the poll thread: a store is a call into librdkafka, too slow to make under the lock.
                    state.StorePending = committable;
                }

                ReleaseKey(record);
            }

            Pump();
        }

        return default;
    }

    public override ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        if (message.TransportState is not Record record)
        {
            return default;
        }

        lock (_sync)
        {
            if (!record.TrySettle())
            {
                return default;
            }

            _unsettled--;
            Settled(record.Partition);
            if (!record.Partition.Revoking)
            {
                // Its key stays taken, so nothing later of the key overtakes it; its offset stays uncommitted.
                var again = record.Again();
                _held++;
                if (delay > TimeSpan.Zero)
                {
                    _delayed.Add((again, DateTime.UtcNow.Ticks + delay.Ticks));
                }
                else
                {
                    _retry.Enqueue(again, again.Offset);
                }
            }

            Pump();
        }

        return default;
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            await WaitForCloseAsync().ConfigureAwait(false);
            return;
        }

        _stop.Cancel();
        var closed = true;
        if (_thread is not null)
        {
            closed = await WaitForCloseAsync().ConfigureAwait(false);
        }
        else
        {
            _consumer?.Dispose();
            _stopped.TrySetResult();
        }

        _established.TrySetCanceled();
        _channel.Writer.TryComplete();
        while (_channel.Reader.TryRead(out _))
        {
        }

        if (closed)
        {
            _stop.Dispose();
        }
    }

    /// <summary>
    /// Waits for the poll thread to commit, leave the group and free the client, at most the transport's
    /// <see cref="KafkaTransport.CloseWaits"/>; false (and a warning) if it did not. librdkafka's synchronous commit and
    /// close have no timeout of their own (a commit the cluster does not answer waits socket.timeout.ms, 60 s): past the
    /// wait the close goes on in the background and the warning names the step it is in (unsettled messages go back to
    /// the group when the session ends, at the latest).
    /// </summary>
    private async Task<bool> WaitForCloseAsync()
    {
        var wait = _transport.CloseWaits.Current;
        if (await _transport.CloseWaits.WaitAsync(_stopped.Task).ConfigureAwait(false))
        {
            return true;
        }

        Log.CloseTimedOut(_transport.Logger, Group, _topic, wait.TotalSeconds, _step);
        return false;
    }

    private void PollLoop()
    {
        var consumer = _consumer!;
        var token = _stop.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                _step = "polling";
                ReleaseDueRetries();
                FlowControl(consumer);
                StoreAcknowledged(consumer);
                Intake(consumer);
            }
        }
        catch (Exception ex)
        {
            // Never let an exception escape this thread (it would end the process); a failure while stopping is moot.
            if (token.IsCancellationRequested)
            {
                _established.TrySetCanceled();
                return;
            }

            Log.ReceiverFailed(_transport.Logger, Group, _topic, ex);
            var error = ex as BusException ?? new BusException(
                $"kafka: the consumer of group '{Group}' on topic '{_topic}' failed: {ex.Message}",
                BusFailureReason.BrokerError, "kafka", _topic, isTransient: true, ex);
            _established.TrySetException(error);
            _channel.Writer.TryComplete(error);
        }
        finally
        {
            Close(consumer);
            _stopped.TrySetResult();
        }
    }

    /// <summary>
    /// Waits up to <see cref="PollInterval"/> for a record, then takes what else librdkafka has already fetched (up to
    /// <see cref="IntakeBatch"/>) and adds it all to the backlog under one lock. On the poll thread, which alone
    /// changes the partition table, so the table is read here without the lock; a rebalance in one of these calls
    /// marks the records it revoked, and they are dropped below.
    /// </summary>
    private void Intake(IConsumer<byte[]?, byte[]?> consumer)
    {
        var wait = PollInterval;
        while (_intake.Count < IntakeBatch)
        {
            ConsumeResult<byte[]?, byte[]?>? result;
            try
            {
                result = consumer.Consume(wait);
            }
            catch (ConsumeException ex) when (!ex.Error.IsFatal)
            {
                // A record that cannot be read or a transient broker error: librdkafka retries; keep polling.
                Log.ClientError(_transport.Logger, "consumer " + Group, ex.Error.Code.ToString(), ex.Error.Reason);
                break;
            }

            if (_assignedOnce)
            {
                _established.TrySetResult();
            }

            if (result is null)
            {
                break;
            }

            wait = TimeSpan.Zero;
            if (!result.IsPartitionEOF && result.Message is not null && _partitions.TryGetValue(result.Partition.Value, out var state) && !state.Revoked)
            {
                _intake.Add(new Record(state, result));
            }
        }

        if (_intake.Count == 0)
        {
            return;
        }

        lock (_sync)
        {
            foreach (var record in _intake)
            {
                if (record.Partition.Revoked)
                {
                    continue;
                }

                record.Partition.Offsets.Fetched(record.Offset);
                _bufferedBytes += record.Size;
                _backlog.AddLast(record);
            }

            Pump();
        }

        _intake.Clear();
    }

    /// <summary>On the poll thread: stores each partition's newest committable offset, one call per partition.</summary>
    private void StoreAcknowledged(IConsumer<byte[]?, byte[]?> consumer)
    {
        lock (_sync)
        {
            foreach (var state in _partitions.Values)
            {
                TakeStore(state);
            }
        }

        Store(consumer);
    }

    /// <summary>Under the lock: moves the partition's pending store to the list <see cref="Store"/> works through.</summary>
    private void TakeStore(PartitionState state)
    {
        if (state.StorePending >= 0)
        {
            _storing.Add((state.Id, state.StorePending));
            state.StorePending = -1;
        }
    }

    private void Store(IConsumer<byte[]?, byte[]?> consumer)
    {
        foreach (var (partition, offset) in _storing)
        {
            try
            {
                consumer.StoreOffset(new TopicPartitionOffset(_topic, new Partition(partition), new Offset(offset)));
            }
            catch (KafkaException ex)
            {
                // Stores happen on this thread while the partition is assigned, so this is not a revocation race.
                Log.StoreFailed(_transport.Logger, Group, _topic, partition, offset, ex);
            }
        }

        _storing.Clear();
    }

    /// <summary>Commits what was acknowledged, leaves the group (revoking everything), and frees the client.</summary>
    private void Close(IConsumer<byte[]?, byte[]?> consumer)
    {
        _leaving = true;
        try
        {
            _step = "storing acknowledged offsets";
            StoreAcknowledged(consumer);
            _step = "committing before close";
            CommitStored(consumer);
            LeaveGroup(consumer);
            _step = "closing (librdkafka leaves the group, revoking and committing)";
            _closing = true;
            consumer.Close();
        }
        catch (Exception ex)
        {
            Log.CommitFailed(_transport.Logger, Group, _topic, ex);
        }
        finally
        {
            lock (_sync)
            {
                foreach (var state in _partitions.Values)
                {
                    state.Revoked = true;
                }

                _partitions.Clear();
                _backlog.Clear();
                _retry.Clear();
                _delayed.Clear();
            }

            try
            {
                _step = "freeing the client";
                consumer.Dispose();
                _step = "closed";
            }
            catch (Exception ex)
            {
                Log.ReceiverFailed(_transport.Logger, Group, _topic, ex);
            }
        }
    }

    /// <summary>
    /// Before <c>Close()</c>: unsubscribes and polls until the revocation that follows has been served here, at most
    /// <see cref="LeaveWait"/>; records fetched meanwhile are dropped (uncommitted, they go to the next owner).
    /// <para>
    /// Why: a rebalance callback still queued when <c>Close()</c> starts is served inside <c>Close()</c>, but librdkafka
    /// no longer waits for it there: its close rejoins (join state init), unassigns by itself and may finish
    /// terminating first. What the callback then sends reaches a group that is terminating or gone: a commit in the
    /// same pass as the group's last step trips <c>rd_kafka_cgrp_terminated: assert:
    /// !rd_kafka_assignment_in_progress</c> and aborts the process (confluentinc/librdkafka#4792); a commit or the
    /// (un)assign Confluent.Kafka makes after the handler, arriving later, is dropped unanswered and never returns.
    /// Unsubscribed, the member starts no more rebalances (no subscription, no heartbeats), so once its revocation
    /// has been served here, <c>Close()</c> has no callback left to serve.
    /// </para>
    /// </summary>
    private void LeaveGroup(IConsumer<byte[]?, byte[]?> consumer)
    {
        _step = "leaving the group (unsubscribed, serving the revocation)";
        try
        {
            // Synchronous: when it returns, the revocation it causes (if this member holds an assignment) is queued.
            consumer.Unsubscribe();
        }
        catch (KafkaException ex)
        {
            Log.ClientError(_transport.Logger, "consumer " + Group, ex.Error.Code.ToString(), ex.Error.Reason);
            return;
        }

        var deadline = DateTime.UtcNow + LeaveWait;
        do
        {
            try
            {
                // Serves the queued callbacks; a rebalance that was under way completes (assignment, then the
                // revocation the unsubscribe postponed) while this polls.
                consumer.Consume(PollInterval);
            }
            catch (KafkaException ex)
            {
                // A record that cannot be read, a broker error or a handler's failure rethrown by the poll (a
                // ConsumeException is one too): the revocation may still come at the next poll, and Close() follows.
                Log.ClientError(_transport.Logger, "consumer " + Group, ex.Error.Code.ToString(), ex.Error.Reason);
            }
        }
        while (_holdingAssignment && DateTime.UtcNow < deadline);
    }

    private IEnumerable<TopicPartitionOffset> OnAssigned(IConsumer<byte[]?, byte[]?> consumer, List<TopicPartition> assigned)
    {
        Log.Assigned(_transport.Logger, Group, _topic, string.Join(',', assigned.Select(p => p.Partition.Value)));
        if (_closing)
        {
            // Served by Close(): librdkafka treats any assignment as an unassignment while it terminates, so no start
            // positions are needed, and a broker call now could reach a group that has already terminated.
            return assigned.Select(p => new TopicPartitionOffset(p, Offset.Unset)).ToList();
        }

        _transport.CloseWaits.Answered(); // an assignment took the group coordinator's answers

        // With cooperative rebalancing the partitions kept stay assigned while the broker calls below may take seconds:
        // store what was acknowledged on them first, so a crash meanwhile does not deliver it again.
        StoreAcknowledged(consumer);
        var outer = _step; // restored below: a rebalance runs inside a call whose step is already named
        var starts = new List<TopicPartitionOffset>(assigned.Count);
        if (assigned.Count > 0)
        {
            _step = "reading the committed offsets of an assignment";
            var committed = consumer.Committed(assigned, BrokerCallTimeout);
            var fresh = new List<TopicPartitionOffset>();
            foreach (var entry in committed)
            {
                if (entry.Offset.Value >= 0)
                {
                    starts.Add(entry);
                }
                else
                {
                    // Resolved once per partition: when the commit below fails, a later assignment of the partition
                    // starts where this one would have, not at a "latest" that has moved on meanwhile.
                    if (!_newGroupStarts.TryGetValue(entry.Partition.Value, out var start))
                    {
                        _step = "resolving the start position of a new group";
                        start = ResolveStart(consumer, entry.TopicPartition);
                        _newGroupStarts[entry.Partition.Value] = start;
                    }

                    fresh.Add(start);
                    starts.Add(start);
                }
            }

            if (fresh.Count > 0)
            {
                // The group exists from now on: commit where it starts, so a successor (or this consumer after a crash)
                // resumes here rather than at a "latest" that has moved on.
                _step = "committing the start positions of a new group";
                try
                {
                    consumer.Commit(fresh);
                    foreach (var start in fresh)
                    {
                        _newGroupStarts.Remove(start.Partition.Value);
                    }
                }
                catch (KafkaException ex)
                {
                    // Typically "rebalance in progress": another member joined or left meanwhile, and a new assignment
                    // follows. Thrown from here, the failure would come out of Consume and leave librdkafka waiting for
                    // an assignment that is never made (a join that never completes); the start positions are kept
                    // above and committed with the next assignment or the first acknowledgement.
                    Log.CommitFailed(_transport.Logger, Group, _topic, ex);
                }
            }

            lock (_sync)
            {
                foreach (var start in starts)
                {
                    _partitions[start.Partition.Value] = new PartitionState(start.Partition.Value, new PartitionOffsets(start.Offset.Value));
                }
            }
        }

        // A new assignment starts unpaused; flow control pauses it again if needed. librdkafka keeps a partition's pause
        // across unassign and assign, so the revoked ones were resumed on their way out (OnRevoked), and with an
        // incremental strategy (cooperative-sticky) the partitions kept are resumed here: left paused while the flag
        // said otherwise, they were never fetched again.
        if (_paused)
        {
            ResumeQuietly(consumer, consumer.Assignment);
        }

        _paused = false;
        _assignedOnce = true;
        _holdingAssignment = true;
        _step = outer;
        return starts;
    }

    private TopicPartitionOffset ResolveStart(IConsumer<byte[]?, byte[]?> consumer, TopicPartition partition)
    {
        var start = _options.StartPosition;
        long offset;
        string how;
        if (_durable && start.Kind == StartPositionKind.Latest)
        {
            // A durable group exists from the moment its topic was ensured; Kafka kept every message for it.
            offset = consumer.QueryWatermarkOffsets(partition, BrokerCallTimeout).Low.Value;
            how = "durable group: earliest";
        }
        else
        {
            switch (start.Kind)
            {
                case StartPositionKind.Earliest:
                    offset = consumer.QueryWatermarkOffsets(partition, BrokerCallTimeout).Low.Value;
                    how = "earliest";
                    break;
                case StartPositionKind.Position:
                    var positions = KafkaMessages.ParsePositions(start.Position!)
                        ?? throw new BusException($"kafka: '{start.Position}' is not a position of topic '{_topic}' (positions are partition:offset, as in ReceivedMessage.Position).", BusFailureReason.Configuration, "kafka", _topic);
                    if (positions.TryGetValue(partition.Partition.Value, out offset))
                    {
                        how = "position";
                    }
                    else
                    {
                        offset = consumer.QueryWatermarkOffsets(partition, BrokerCallTimeout).High.Value;
                        how = "position names another partition: latest";
                    }

                    break;
                case StartPositionKind.Time:
                    var found = consumer.OffsetsForTimes([new TopicPartitionTimestamp(partition, new Timestamp(start.Time))], BrokerCallTimeout);
                    offset = found.Count == 1 && found[0].Offset.Value >= 0
                        ? found[0].Offset.Value
                        : consumer.QueryWatermarkOffsets(partition, BrokerCallTimeout).High.Value;
                    how = "time";
                    break;
                default:
                    offset = consumer.QueryWatermarkOffsets(partition, BrokerCallTimeout).High.Value;
                    how = "latest";
                    break;
            }
        }

        Log.StartResolved(_transport.Logger, Group, _topic, partition.Partition.Value, offset, how);
        return new TopicPartitionOffset(partition, new Offset(offset));
    }

    private void OnRevoked(IConsumer<byte[]?, byte[]?> consumer, List<TopicPartitionOffset> revoked, bool lost)
    {
        int dropped;
        var unfinished = 0;
        var waited = TimeSpan.Zero;
        lock (_sync)
        {
            var states = new List<PartitionState>();
            foreach (var partition in revoked)
            {
                if (_partitions.TryGetValue(partition.Partition.Value, out var state))
                {
                    state.Revoking = true; // nothing more of it is handed out; acknowledgements still count
                    states.Add(state);
                }
            }

            dropped = DropRevoked(states);
            if (!lost && !_leaving && !_stop.IsCancellationRequested)
            {
                (unfinished, waited) = WaitForHandlers(states);
            }

            foreach (var state in states)
            {
                // Acknowledgements check Revoked under this lock: what was acknowledged before is stored below.
                _partitions.Remove(state.Id);
                state.Revoked = true;
                TakeStore(state);
            }
        }

        if (unfinished > 0 && !_stop.IsCancellationRequested)
        {
            Log.RevocationWaitExpired(_transport.Logger, Group, _topic, waited.TotalMilliseconds, unfinished);
        }
        else if (waited > TimeSpan.Zero)
        {
            Log.RevocationWaited(_transport.Logger, Group, _topic, waited.TotalMilliseconds);
        }

        _holdingAssignment = false;
        if (_paused)
        {
            // While still assigned: librdkafka would keep the pause into the next assignment of these partitions.
            ResumeQuietly(consumer, revoked.Select(p => p.TopicPartition));
        }

        var names = string.Join(',', revoked.Select(p => p.Partition.Value));
        if (lost)
        {
            _storing.Clear();
            Log.Lost(_transport.Logger, Group, _topic, names);
            return;
        }

        Log.Revoked(_transport.Logger, Group, _topic, names, dropped);
        Store(consumer);
        if (_closing)
        {
            // Served by Close() (LeaveGroup ran out of time): no commit, which could reach a group that has already
            // terminated. What was acknowledged was committed just before Close(), and librdkafka commits the offsets
            // stored above when it unassigns these partitions (enable.auto.commit), as part of closing.
            return;
        }

        var outer = _step;
        _step = "committing on revocation";
        CommitStored(consumer);
        _step = outer;
    }

    /// <summary>
    /// Under the lock, on the poll thread inside a revocation: waits until the messages handed out from
    /// <paramref name="states"/> are settled, at most <see cref="_revocationWait"/> (the subscription's ack timeout, at
    /// most half the operation timeout and half of max.poll.interval.ms), so that their acknowledgements are committed
    /// before the partitions change owner. Without it, the next owner started from the last commit while a handler of this
    /// consumer was still at work on the same message, and two handlers of one key ran at once. Kafka's own consumers
    /// get this by handling records on the polling thread: a rebalance waits for their next poll. The group's rebalance
    /// waits meanwhile.
    /// </summary>
    /// <returns>How many were still unsettled when the wait ended, and how long it waited.</returns>
    private (int Unfinished, TimeSpan Waited) WaitForHandlers(List<PartitionState> states)
    {
        if (Outstanding(states) == 0)
        {
            return (0, TimeSpan.Zero);
        }

        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var step = _step;
        _step = "waiting for handlers of revoked partitions";
        int outstanding;
        while ((outstanding = Outstanding(states)) > 0 && !_stop.IsCancellationRequested)
        {
            var left = _revocationWait - System.Diagnostics.Stopwatch.GetElapsedTime(started);
            if (left <= TimeSpan.Zero)
            {
                break;
            }

            // Settlements pulse; the slice bounds how late a dispose (which cancels _stop) is noticed.
            Monitor.Wait(_sync, left < RevocationWaitSlice ? left : RevocationWaitSlice);
        }

        _step = step;
        return (outstanding, System.Diagnostics.Stopwatch.GetElapsedTime(started));

        static int Outstanding(List<PartitionState> states)
        {
            var sum = 0;
            foreach (var state in states)
            {
                sum += state.Outstanding;
            }

            return sum;
        }
    }

    /// <summary>Under the lock: one message handed out from <paramref name="state"/> was settled.</summary>
    private void Settled(PartitionState state)
    {
        if (--state.Outstanding == 0 && state.Revoking)
        {
            Monitor.PulseAll(_sync); // a revocation may be waiting for it (WaitForHandlers)
        }
    }

    private void CommitStored(IConsumer<byte[]?, byte[]?> consumer)
    {
        try
        {
            consumer.Commit();
        }
        catch (KafkaException ex) when (ex.Error.Code is ErrorCode.Local_NoOffset)
        {
            // Nothing acknowledged since the last commit.
        }
        catch (KafkaException ex)
        {
            Log.CommitFailed(_transport.Logger, Group, _topic, ex);
        }
    }

    /// <summary>
    /// Under the lock: forgets what this consumer buffered for partitions it no longer owns (backlog, retries, messages
    /// waiting behind a key). Deliveries already handed out stay counted until settled; settling them is a no-op.
    /// </summary>
    private int DropRevoked(List<PartitionState> states)
    {
        var dropped = 0;
        for (var node = _backlog.First; node is not null;)
        {
            var next = node.Next;
            if (node.Value.Partition.Revoking)
            {
                _backlog.Remove(node);
                Unbuffer(node.Value);
                dropped++;
            }

            node = next;
        }

        if (_retry.Count > 0)
        {
            var keep = new List<Record>();
            while (_retry.TryDequeue(out var record, out _))
            {
                if (record.Partition.Revoking)
                {
                    dropped++;
                    _held--;
                    Unbuffer(record);
                }
                else
                {
                    keep.Add(record);
                }
            }

            foreach (var record in keep)
            {
                _retry.Enqueue(record, record.Offset);
            }
        }

        for (var i = _delayed.Count - 1; i >= 0; i--)
        {
            if (_delayed[i].Record.Partition.Revoking)
            {
                _delayed.RemoveAt(i);
                dropped++;
                _held--;
            }
        }

        foreach (var state in states)
        {
            foreach (var waiting in state.ActiveKeys.Values)
            {
                dropped += waiting?.Count ?? 0;
                _held -= waiting?.Count ?? 0;
                foreach (var record in waiting ?? [])
                {
                    Unbuffer(record);
                }
            }

            state.ActiveKeys.Clear();
        }

        return dropped;
    }

    /// <summary>Resumes fetching of <paramref name="partitions"/>; a partition librdkafka no longer knows is no matter.</summary>
    private void ResumeQuietly(IConsumer<byte[]?, byte[]?> consumer, IEnumerable<TopicPartition> partitions)
    {
        try
        {
            consumer.Resume(partitions);
        }
        catch (KafkaException ex)
        {
            Log.ResumeFailed(_transport.Logger, Group, _topic, ex);
        }
    }

    /// <summary>Pauses fetching while the local backlog is full, resumes at half. On the poll thread.</summary>
    private void FlowControl(IConsumer<byte[]?, byte[]?> consumer)
    {
        int buffered;
        long bytes;
        lock (_sync)
        {
            buffered = _backlog.Count + _held;
            bytes = _bufferedBytes;
        }

        if (!_paused && (buffered >= _bufferLimit || bytes >= _bufferByteLimit))
        {
            consumer.Pause(consumer.Assignment);
            _paused = true;
            Log.FlowControl(_transport.Logger, Group, _topic, "paused", buffered);
        }
        else if (_paused && buffered < _bufferLimit / 2 && bytes < _bufferByteLimit / 2)
        {
            consumer.Resume(consumer.Assignment);
            _paused = false;
            Log.FlowControl(_transport.Logger, Group, _topic, "resumed", buffered);
        }
    }

    private void ReleaseDueRetries()
    {
        lock (_sync)
        {
            if (_delayed.Count == 0)
            {
                return;
            }

            var now = DateTime.UtcNow.Ticks;
            for (var i = _delayed.Count - 1; i >= 0; i--)
            {
                if (_delayed[i].DueTicks <= now)
                {
                    _retry.Enqueue(_delayed[i].Record, _delayed[i].Record.Offset);
                    _delayed.RemoveAt(i);
                }
            }

            Pump();
        }
    }

    /// <summary>Under the lock: hands out retries, then backlog records, while fewer than max in-flight are unsettled.</summary>
    private void Pump()
    {
        while (_unsettled < _options.MaxInFlight)
        {
            if (_retry.TryDequeue(out var retry, out _))
            {
                _held--;
                Deliver(retry);
                continue;
            }

            if (_backlog.First is not { } node)
            {
                return;
            }

            _backlog.RemoveFirst();
            var record = node.Value;
            if (_options.PerKeyOrdering && record.Key is { } key)
            {
                var keys = record.Partition.ActiveKeys;
                if (keys.TryGetValue(key, out var waiting))
                {
                    // An earlier message of this key is out: this one waits behind it.
                    (waiting ??= new Queue<Record>()).Enqueue(record);
                    keys[key] = waiting;
                    _held++;
                    continue;
                }

                keys[key] = null;
            }

            Deliver(record);
        }
    }

    /// <summary>Under the lock: after an ack, the next waiting message of the key (if any) goes out first.</summary>
    private void ReleaseKey(Record done)
    {
        if (!_options.PerKeyOrdering || done.Key is not { } key || !done.Partition.ActiveKeys.TryGetValue(key, out var waiting))
        {
            return;
        }

        if (waiting is { Count: > 0 })
        {
            var next = waiting.Dequeue();
            _held--;
            if (_unsettled < _options.MaxInFlight)
            {
                Deliver(next);
            }
            else
            {
                _held++;
                _retry.Enqueue(next, next.Offset);
            }
        }
        else
        {
            done.Partition.ActiveKeys.Remove(key);
        }
    }

    private void Deliver(Record record)
    {
        Unbuffer(record);
        var count = _counts.Next((record.Partition.Id, record.Offset));
        _unsettled++;
        record.Partition.Outstanding++;
        _channel.Writer.TryWrite(KafkaMessages.ToReceived(_topic, record.Result, record.Key, count, record));
    }

    private void Unbuffer(Record record)
    {
        if (record.Buffered)
        {
            record.Buffered = false;
            _bufferedBytes -= record.Size;
        }
    }

    /// <summary>A partition while this consumer owns it.</summary>
    private sealed class PartitionState(int id, PartitionOffsets offsets)
    {
        public int Id { get; } = id;

        public PartitionOffsets Offsets { get; } = offsets;

        /// <summary>Keys with a message out; the queue holds later messages of the key waiting their turn.</summary>
        public Dictionary<string, Queue<Record>?> ActiveKeys { get; } = new(StringComparer.Ordinal);

        /// <summary>A committable offset acknowledged and not yet stored, or -1.</summary>
        public long StorePending { get; set; } = -1;

        /// <summary>Handed out and not yet settled.</summary>
        public int Outstanding { get; set; }

        /// <summary>Being revoked: nothing more is handed out, while acknowledgements still count.</summary>
        public bool Revoking { get; set; }

        /// <summary>No longer this consumer's: settlements are ignored. Implies <see cref="Revoking"/>.</summary>
        public bool Revoked
        {
            get => _revoked;
            set
            {
                _revoked = value;
                Revoking |= value;
            }
        }

        private bool _revoked;
    }

    /// <summary>One delivery of a consumed record: the settlement handle, which formats the position only when asked.</summary>
    private sealed class Record(PartitionState partition, ConsumeResult<byte[]?, byte[]?> result) : DeliveryHandle
    {
        private int _settled;

        public PartitionState Partition { get; } = partition;

        public ConsumeResult<byte[]?, byte[]?> Result { get; } = result;

        public long Offset => Result.Offset.Value;

        public string? Key { get; } = result.Message.Key is { } key ? System.Text.Encoding.UTF8.GetString(key) : null;

        /// <summary>Bytes this record holds while it counts against the backlog limit.</summary>
        public int Size { get; } = (result.Message.Value?.Length ?? 0) + (result.Message.Key?.Length ?? 0) + 64;

        /// <summary>Whether it still counts against the backlog limit (fetched, never handed out).</summary>
        public bool Buffered { get; set; } = true;

        public bool TrySettle() => Interlocked.Exchange(ref _settled, 1) == 0;

        public Record Again() => new(Partition, Result) { Buffered = false };

        public override string FormatPosition() => KafkaMessages.Position(Partition.Id, Offset);
    }
}
