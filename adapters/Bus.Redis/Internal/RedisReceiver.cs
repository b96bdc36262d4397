using System.Threading.Channels;
using Bus.Transport;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Bus.Redis.Internal;

/// <summary>
/// One consumer of a Redis consumer group. Polls (XREADGROUP without BLOCK, on the shared multiplexer, with a short
/// backoff while the stream is idle) for at most the free credit, and periodically claims entries of the group's
/// pending entries list that have been idle longer than the ack timeout (XAUTOCLAIM). Entries it has handed out and
/// not settled are "in hand"; their number never exceeds <see cref="SubscriptionOptions.MaxInFlight"/>.
/// </summary>
/// <remarks>
/// <para>
/// Every delivery carries a <see cref="Lease"/>, settled once by whoever ends it first: an ack, nack or dead-letter,
/// a claim of the same entry after the ack timeout or a read of it after the group was moved back (the old delivery
/// expires), or the release on close. Ending a lease
/// takes no lock (the lease and the count of leases held are atomic), and the list of leases handed out belongs to the
/// loop alone, which prunes ended leases from it as it goes: acks come from handler threads while the loop delivers,
/// and a lock they shared for the hand was contended once per message on each side. An ack only takes a short lock to
/// queue its entry id, which the loop takes once per read.
/// </para>
/// <para>
/// Delivery counts come from the pending entries list, which Redis keeps per entry: XREADGROUP sets 1, every claim
/// for delivery (XCLAIM without JUSTID) adds 1; a nack and a release on close only move the entry's idle time
/// (JUSTID), so the next claim counts the redelivery. An entry held past the ack timeout can be claimed by any
/// consumer of the group, this one included: the old delivery has then expired (settling it is ignored here; an ack
/// from a consumer that lost the entry to another one still removes it, at-least-once either way).
/// </para>
/// </remarks>
internal sealed class RedisReceiver : TransportReceiver
{
    private const int ReleaseChunk = 500;

    private readonly RedisTransport _transport;
    private readonly IDatabase _database;
    private readonly RedisKey _key;
    private readonly string _topic;
    private readonly string _group;
    private readonly string _consumer;
    private readonly int _maxInFlight;
    private readonly long _ackTimeoutMs;
    private readonly TimeSpan _pollMaxDelay;
    private readonly long _claimIntervalMs;
    private readonly ILogger _logger;
    private readonly Channel<ReceivedMessage> _channel = Channel.CreateUnbounded<ReceivedMessage>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });
    // Every lease handed out, ended ones until the next prune: the loop's alone (and close's, after it). A list, not a
    // map by entry id: only a claim delivers an entry this consumer may still hold (XREADGROUP > delivers an entry
    // once, unless the group is moved back or created again between reads, which _highestRead tells), so looking leases
    // up by id is the job of claims and of those rare reads, and the common path hashes nothing.
    private readonly List<Lease> _inHand = [];
    private readonly int _pruneAt;
    private int _held; // leases handed out and not ended: the credit in use
    private readonly SemaphoreSlim _wake = new(0, 1);
    private readonly CancellationTokenSource _stop = new();
    private RedisValue _claimCursor = "0-0";
    private long _claimAt; // Environment.TickCount64 of the next XAUTOCLAIM
    // Acked entries not yet sent. The loop sends them (one XACK) just before its next read, so that both go out in one
    // write, as a raw consumer pipelines its XACK ahead of its next XREADGROUP: an XACK of its own per settlement burst
    // cost a write (a system call) and a command more per read, measured at about twice the commands per message.
    private readonly Lock _acksLock = new();
    private readonly List<RedisValue> _acksDue = [];
    private bool _acksClosed; // under _acksLock: closing has taken the last acks, later ones are not sent
    private Task _lastAckSent = Task.CompletedTask;
    private volatile bool _loopEnded; // from here on, an ack sends its own XACK: nobody else would until closing
    private long _nextTag;
    // The highest entry id this consumer was given (read or claimed). XREADGROUP > hands out entries after the group's
    // last delivered id, in order, so a read that starts at or below it means the group was moved back (XGROUP SETID,
    // or a server restored or failed over to an older state) or created again: until reads pass it (_rereading),
    // entries this consumer still holds may come again.
    private (ulong Ms, ulong Sequence) _highestRead;
    private bool _rereading;
    private readonly RedisKey _delayedKey;
    private readonly long _delayCheckMs;
    private long _moveAt; // Environment.TickCount64 of the next look at the delay set
    private int _rescan; // 1: the next XAUTOCLAIM starts from the beginning of the pending list
    private Task _loop = Task.CompletedTask;
    private int _disposed;

    public RedisReceiver(RedisTransport transport, string topic, SubscriptionOptions options, string consumer, ILogger logger)
    {
        _transport = transport;
        _database = transport.Database;
        _key = topic;
        _topic = topic;
        _group = options.Group;
        _consumer = consumer;
        _maxInFlight = options.MaxInFlight;
        _ackTimeoutMs = Math.Max(1, (long)Math.Ceiling(options.AckTimeout.TotalMilliseconds));
        _pollMaxDelay = transport.Settings.PollMaxDelay;
        _claimIntervalMs = Math.Max(1, (long)transport.Settings.ClaimInterval.TotalMilliseconds);
        _delayedKey = RedisTransport.DelayedKey(topic);
        _delayCheckMs = Math.Max(1, (long)transport.Settings.DelayCheckInterval.TotalMilliseconds);
        _logger = logger;
        _pruneAt = (2 * _maxInFlight) + 64;
    }

    public override ChannelReader<ReceivedMessage> Deliveries => _channel.Reader;

    /// <summary>This consumer's name in the group.</summary>
    public string Consumer => _consumer;

    private int FreeCredit => _maxInFlight - Volatile.Read(ref _held);

    public void Start() => _loop = Task.Run(RunThenHandOverAcksAsync);

    private async Task RunThenHandOverAcksAsync()
    {
        try
        {
            await RunAsync().ConfigureAwait(false);
        }
        finally
        {
            // Acks queued since the last read, and from now on every ack, go without the loop.
            _loopEnded = true;
            SendAcks();
        }
    }

    public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        var lease = (Lease)message.TransportState!;
        if (!lease.TryEnd())
        {
            return default; // expired (claimed or read again) or released: it belongs to a newer delivery now
        }

        // The ack completes when it is queued for the loop's next XACK, as an AMQP ack completes when written: a
        // failed XACK leaves the entry pending, claimed again after the ack timeout (at-least-once), and is logged.
        // Not waiting for the reply spares every message a continuation and the chain of awaits above it. Queued
        // before the credit is freed, so the read that the freed credit wakes the loop for carries this XACK. Closing
        // sends what is queued before it releases the rest of the hand.
        bool queued;
        lock (_acksLock)
        {
            queued = !_acksClosed;
            if (queued)
            {
                _acksDue.Add(lease.EntryId);
            }
        }

        if (!queued)
        {
            // Closing has taken the last acks: this one raced it. The entry has left the hand, so it is not released
            // with the rest; sent alone, it is not delivered again (closing does not wait for it).
            _ = AcknowledgeAsync([lease.EntryId]);
        }

        ReturnCredit();
        if (_loopEnded)
        {
            SendAcks(); // the loop failed (or closing stopped it): its deliveries' acks go without it
        }

        return default;
    }

    public override async ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        var lease = (Lease)message.TransportState!;
        if (!End(lease))
        {
            return; // released or superseded: nothing to do
        }

        var id = lease.EntryId;

        var delayMs = Math.Max(0, (long)Math.Ceiling(delay.TotalMilliseconds));
        if (delayMs < _ackTimeoutMs)
        {
            // Idle time (ack timeout - delay): claimable by XAUTOCLAIM (min idle = ack timeout) once the delay has passed.
            await SetIdleAsync(id, _ackTimeoutMs - delayMs).WaitAsync(cancellationToken).ConfigureAwait(false);
            ClaimWithin(delayMs);
            return;
        }

        // Longer than the lease: keep the lease fresh until the rest of the delay fits in one ack timeout.
        await SetIdleAsync(id, 0).WaitAsync(cancellationToken).ConfigureAwait(false);
        _ = DeferAsync(id, Environment.TickCount64 + delayMs);
    }

    /// <summary>Writes the dead-letter copy and acknowledges the entry in one script: both or neither.</summary>
    public async ValueTask DeadLetterAsync(ReceivedMessage message, string deadLetterTopic, OutgoingMessage copy, CancellationToken cancellationToken)
    {
        var lease = (Lease)message.TransportState!;
        var id = lease.EntryId;
        if (!lease.IsHeld)
        {
            Log.DeadLetterSkipped(_logger, _topic, _group, lease.FormatPosition());
            return; // expired or released: a newer delivery owns the entry and decides its fate
        }

        try
        {
            var trim = _transport.Settings.TrimArguments();
            var fields = new List<object>(24);
            StreamCodec.AppendFields(copy, fields);
            var arguments = new RedisValue[4 + trim.Count + fields.Count];
            arguments[0] = _group;
            arguments[1] = _consumer;
            arguments[2] = id;
            arguments[3] = trim.Count;
            var i = 4;
            foreach (var value in trim)
            {
                arguments[i++] = (RedisValue)value;
            }

            foreach (var value in fields)
            {
                arguments[i++] = (RedisValue)value;
            }

            var result = await _database.ScriptEvaluateAsync(RedisScripts.DeadLetter, [_key, deadLetterTopic], arguments)
                .WaitAsync(cancellationToken).ConfigureAwait(false);
            if (result.IsNull)
            {
                Log.DeadLetterSkipped(_logger, _topic, _group, lease.FormatPosition());
            }
        }
        finally
        {
            End(lease);
        }
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _transport.Unregister(_topic, this);
        await _stop.CancelAsync().ConfigureAwait(false);
        var what = $"consumer {_consumer} (group {_group}, stream {_topic})";

        // The loop stops once the command it waits for returns: against a frozen server, after the operation timeout.
        // Its failures are its own to report (through the channel).
        var loopEnded = await _transport.WaitOnCloseAsync(_loop, what).ConfigureAwait(false);

        // Acks already given are sent before the hand is released, so that they are not delivered again. Replies come
        // in order on the connection, so the last XACK's completion covers the loop's earlier ones.
        var lastAcks = TakeAcks(close: true);
        var acked = lastAcks is null ? _lastAckSent : Task.WhenAll(_lastAckSent, AcknowledgeAsync(lastAcks));
        await _transport.WaitOnCloseAsync(acked, what).ConfigureAwait(false);

        // Buffered deliveries were in this consumer's hands too: all of them go back to the group.
        _channel.Writer.TryComplete();
        while (_channel.Reader.TryRead(out _))
        {
        }

        if (!loopEnded)
        {
            // The loop still waits for the server, and the list of the hand is still its own: nothing is released. The
            // entries stay pending and become claimable after the ack timeout, as when a release fails.
            Log.CloseAbandoned(_logger, _topic, _group, _consumer);
            _ = _loop.ContinueWith(_ => _stop.Dispose(), CancellationToken.None, TaskContinuationOptions.None, TaskScheduler.Default);
            return;
        }

        // The loop has ended: the list is close's now. Acks racing this are settled by whichever ends a lease first.
        var ids = new List<RedisValue>(Math.Max(0, Volatile.Read(ref _held)));
        foreach (var lease in _inHand)
        {
            if (End(lease))
            {
                ids.Add(lease.EntryId);
            }
        }

        _inHand.Clear();
        _stop.Dispose();

        // Sent even when the server is silent (a server that wakes up carries it out), but waited for only so long.
        await _transport.WaitOnCloseAsync(ReleaseAsync(ids), what).ConfigureAwait(false);
    }

    /// <summary>Hands <paramref name="ids"/> back to the group (claimable at once by any consumer); never throws.</summary>
    private async Task ReleaseAsync(List<RedisValue> ids)
    {
        try
        {
            long released = 0;
            var offset = 0;
            do
            {
                var length = Math.Min(ReleaseChunk, ids.Count - offset);
                var arguments = new RedisValue[2 + length];
                arguments[0] = _group;
                arguments[1] = _consumer;
                for (var i = 0; i < length; i++)
                {
                    arguments[2 + i] = ids[offset + i];
                }

                released += (long)await _database.ScriptEvaluateAsync(RedisScripts.Release, [_key], arguments).ConfigureAwait(false);
                offset += length;
            }
            while (offset < ids.Count);
            Log.Released(_logger, _topic, _group, _consumer, released);
        }
        catch (Exception ex)
        {
            Log.ReleaseFailed(_logger, _topic, _group, _consumer, ex);
        }
    }

    /// <summary>Takes the queued acks (null if none); with <paramref name="close"/>, later ones are not queued.</summary>
    private RedisValue[]? TakeAcks(bool close = false)
    {
        lock (_acksLock)
        {
            _acksClosed |= close;
            if (_acksDue.Count == 0)
            {
                return null;
            }

            var ids = _acksDue.ToArray();
            _acksDue.Clear();
            return ids;
        }
    }

    /// <summary>Sends the queued acks, if any, without waiting for the reply.</summary>
    private void SendAcks()
    {
        if (TakeAcks() is { } ids)
        {
            _lastAckSent = AcknowledgeAsync(ids);
        }
    }

    /// <summary>
    /// XACKs one batch; never throws (a failure is logged: the entries stay pending and are delivered again after the
    /// ack timeout). XACK by id is harmless if the entry was meanwhile claimed by another consumer (it was processed
    /// here).
    /// </summary>
    private async Task AcknowledgeAsync(RedisValue[] ids)
    {
        try
        {
            await _database.StreamAcknowledgeAsync(_key, _group, ids).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.AckFailed(_logger, _topic, _group, _consumer, ids.Length, ex);
        }
    }

    private async Task RunAsync()
    {
        var token = _stop.Token;
        var idle = TimeSpan.Zero;
        var failures = 0;
        while (!token.IsCancellationRequested)
        {
            try
            {
                SendAcks();
                if (FreeCredit <= 0)
                {
                    // Full: wait for a settlement (or, rarely, a missed wake-up).
                    await _wake.WaitAsync(_pollMaxDelay * 5, token).ConfigureAwait(false);
                    continue;
                }

                var delivered = 0;
                var moved = false;
                if (Environment.TickCount64 >= Volatile.Read(ref _moveAt))
                {
                    moved = await MoveDueAsync().ConfigureAwait(false);
                }

                if (Environment.TickCount64 >= Volatile.Read(ref _claimAt))
                {
                    SendAcks(); // ahead of XAUTOCLAIM, so that an entry acked meanwhile is not claimed again
                    delivered += await ClaimAsync().ConfigureAwait(false);
                }

                var free = FreeCredit;
                if (free > 0)
                {
                    delivered += await ReadNewAsync(free).ConfigureAwait(false);
                }

                failures = 0;
                _transport.CloseWaits.Answered();
                if (delivered > 0 || moved)
                {
                    idle = TimeSpan.Zero;
                    continue;
                }

                // Nothing there: back off 1, 2, 4 ... ms up to the poll limit, or until woken by a settlement or a nack.
                idle = idle == TimeSpan.Zero ? TimeSpan.FromMilliseconds(1) : TimeSpan.FromTicks(Math.Min(idle.Ticks * 2, _pollMaxDelay.Ticks));
                await _wake.WaitAsync(idle, token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                break;
            }
            catch (RedisServerException ex) when (ex.Message.StartsWith("NOGROUP", StringComparison.Ordinal))
            {
                // The stream or the group is gone: deleted, or a restart of a server without persistence. Whatever is
                // in the stream now has not been seen by this group, so it starts again from the beginning (duplicates
                // rather than loss); deliveries in hand belong to the old group and can no longer be settled.
                Log.GroupRecreated(_logger, _topic, _group, ex);
                foreach (var lease in _inHand)
                {
                    End(lease);
                }

                _inHand.Clear();

                _claimCursor = "0-0";
                _highestRead = default; // reading starts again from the beginning, with nothing in hand: nothing to report
                _rereading = false;
                try
                {
                    await _transport.CreateGroupAsync(_topic, _group, "0").ConfigureAwait(false);
                }
                catch (Exception again) when (again is RedisException or TimeoutException)
                {
                    Log.ReadFailed(_logger, _topic, _group, TimeSpan.FromMilliseconds(500), again);
                    try
                    {
                        await PauseAsync(TimeSpan.FromMilliseconds(500), token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        break;
                    }
                }
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or ObjectDisposedException)
            {
                if (token.IsCancellationRequested)
                {
                    // Stopped while waiting for a server that did not answer, and closing went on without this loop
                    // (the connection may be gone by now): nothing to report.
                    break;
                }

                // The multiplexer reconnects by itself; keep polling with a growing pause.
                var pause = TimeSpan.FromMilliseconds(Math.Min(5000, 100 << Math.Min(failures++, 6)));
                Log.ReadFailed(_logger, _topic, _group, pause, ex);
                try
                {
                    await PauseAsync(pause, token).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            catch (Exception ex)
            {
                Log.ReceiverFailed(_logger, _topic, _group, ex);
                _channel.Writer.TryComplete(ex);
                return;
            }
        }
    }

    /// <summary>
    /// Waits <paramref name="pause"/> (a back-off after a failure), sending the acks that come meanwhile: the loop is
    /// their only sender, and an ack held longer than the ack timeout would be delivered again.
    /// </summary>
    private async Task PauseAsync(TimeSpan pause, CancellationToken token)
    {
        var until = Environment.TickCount64 + (long)pause.TotalMilliseconds;
        long remaining;
        while ((remaining = until - Environment.TickCount64) > 0)
        {
            await _wake.WaitAsync(TimeSpan.FromMilliseconds(remaining), token).ConfigureAwait(false);
            SendAcks();
        }
    }

    /// <summary>
    /// Delayed delivery (emulated): moves this topic's due delayed messages into the stream, and decides when to look
    /// again: at the next due time, or after the delay-check interval for messages published elsewhere.
    /// </summary>
    private async Task<bool> MoveDueAsync()
    {
        const int Batch = 100;
        var scheduled = Volatile.Read(ref _moveAt);
        var trim = _transport.Settings.TrimArguments();
        var arguments = new RedisValue[2 + trim.Count];
        arguments[0] = Batch;
        arguments[1] = trim.Count;
        for (var i = 0; i < trim.Count; i++)
        {
            arguments[2 + i] = (RedisValue)trim[i];
        }

        var result = (RedisResult[])(await _database.ScriptEvaluateAsync(RedisScripts.MoveDue, [_key, _delayedKey], arguments).ConfigureAwait(false))!;
        var moved = (long)result[0];
        var wait = _delayCheckMs;
        if (moved >= Batch)
        {
            wait = 0;
        }
        else if (!result[2].IsNull && double.TryParse((string?)result[2], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var nextDue))
        {
            wait = Math.Clamp((long)Math.Ceiling(nextDue) - (long)result[1], 0, _delayCheckMs);
        }

        // Unless a local delayed publish asked for an earlier look meanwhile (MoveWithin): that stays.
        Interlocked.CompareExchange(ref _moveAt, Environment.TickCount64 + wait, scheduled);
        return moved > 0;
    }

    /// <summary>A delayed message was published through this transport: look at the delay set when it is due.</summary>
    public void MoveWithin(long delayMs)
    {
        var due = Environment.TickCount64 + delayMs;
        long current;
        while (due < (current = Volatile.Read(ref _moveAt)) && Interlocked.CompareExchange(ref _moveAt, due, current) != current)
        {
        }
    }

    private async Task<int> ReadNewAsync(int count)
    {
        // No BLOCK: a blocking XREADGROUP would stall every other command on the shared connection.
        var entries = await _database.StreamReadGroupAsync(_key, _group, _consumer, StreamPosition.NewMessages, count).ConfigureAwait(false);
        if (entries.Length == 0)
        {
            return 0;
        }

        var deliveries = new ReceivedMessage[entries.Length];
        for (var i = 0; i < entries.Length; i++)
        {
            var entryId = entries[i].Id;
            deliveries[i] = StreamCodec.Decode(_topic, entryId, entries[i].Values, 1, ++_nextTag, new Lease(entryId));
        }

        // Two ids parsed per read, not per message: entries come in id order.
        var again = StreamIds.TryParse(entries[0].Id, out var firstMs, out var firstSequence)
            && (firstMs, firstSequence).CompareTo(_highestRead) <= 0;
        if (again && !_rereading)
        {
            Log.GroupMovedBack(_logger, _topic, _group, _consumer, (string?)entries[0].Id ?? "", $"{_highestRead.Ms}-{_highestRead.Sequence}");
        }

        _rereading = again;
        NoteHighest(entries[^1].Id);

        // Entries this consumer holds may be among those read again: as for a claim, their older deliveries expire.
        Deliver(deliveries, mayBeHeld: again);
        return entries.Length;
    }

    /// <summary>Claims entries idle longer than the ack timeout (abandoned, released, or nacked and due) and delivers them.</summary>
    private async Task<int> ClaimAsync()
    {
        var free = FreeCredit;
        if (free <= 0)
        {
            return 0;
        }

        var scheduled = Volatile.Read(ref _claimAt);
        if (Interlocked.Exchange(ref _rescan, 0) == 1)
        {
            _claimCursor = "0-0";
        }

        // JUSTID: taking ownership (and resetting idle) without counting; only what is really delivered is counted, by Take.
        var claimed = await _database.StreamAutoClaimIdsOnlyAsync(_key, _group, _consumer, _ackTimeoutMs, _claimCursor, free).ConfigureAwait(false);
        _claimCursor = claimed.NextStartId.IsNullOrEmpty ? (RedisValue)"0-0" : claimed.NextStartId;
        var wrapped = _claimCursor == "0-0";
        // Unless a nack asked for an earlier claim meanwhile (ClaimWithin): that stays, or a nack without delay would wait
        // for the next claim interval.
        Interlocked.CompareExchange(ref _claimAt, wrapped ? Environment.TickCount64 + _claimIntervalMs : 0, scheduled);
        foreach (var deleted in claimed.DeletedIds ?? [])
        {
            Log.PendingEntryDeleted(_logger, _topic, _group, (string)deleted!);
        }

        // Entries this consumer still holds are among them when it kept them past the ack timeout: like any consumer's,
        // that delivery has expired (settling it is ignored) and the entry is delivered again, counted.
        var take = claimed.ClaimedIds ?? [];
        if (take.Length == 0)
        {
            return 0;
        }

        var arguments = new RedisValue[2 + take.Length];
        arguments[0] = _group;
        arguments[1] = _consumer;
        take.CopyTo(arguments, 2);
        var result = await _database.ScriptEvaluateAsync(RedisScripts.Take, [_key], arguments).ConfigureAwait(false);
        var entries = (RedisResult[]?)result ?? [];
        var deliveries = new ReceivedMessage[entries.Length];
        for (var e = 0; e < entries.Length; e++)
        {
            var parts = (RedisResult[])entries[e]!;
            var raw = (RedisResult[]?)parts[1] ?? [];
            var fields = new NameValueEntry[raw.Length / 2];
            for (var i = 0; i < fields.Length; i++)
            {
                fields[i] = new NameValueEntry((RedisValue)raw[2 * i], (RedisValue)raw[(2 * i) + 1]);
            }

            var entryId = (RedisValue)parts[0];
            deliveries[e] = StreamCodec.Decode(_topic, entryId, fields, (int)Math.Min(int.MaxValue, (long)parts[2]), ++_nextTag, new Lease(entryId));

            // Claimed entries are held too: one read again after a move back must find its older lease as a read one
            // would. (Pending entries lie at or below the group's last delivered id: this raises nothing a read would not.)
            NoteHighest(entryId);
        }

        Deliver(deliveries, mayBeHeld: true);

        Log.Claimed(_logger, _topic, _group, _consumer, entries.Length);
        return entries.Length;
    }

    /// <summary>
    /// Puts deliveries in hand and hands them out (loop only). An entry delivered again while this consumer still holds it
    /// (claimed, or read again after the group was moved back) ends the older lease: that delivery has expired.
    /// <paramref name="mayBeHeld"/> says whether to look.
    /// </summary>
    private void Deliver(ReceivedMessage[] deliveries, bool mayBeHeld)
    {
        if (_inHand.Count >= _pruneAt)
        {
            // Amortised: after a prune the list holds at most the credit's worth of leases, so the next prune comes
            // after at least a credit's worth of deliveries; the list never exceeds about three times the credit.
            _inHand.RemoveAll(static lease => !lease.IsHeld);
        }

        var expired = mayBeHeld ? ExpireOlderLeases(deliveries) : 0;
        foreach (var delivery in deliveries)
        {
            _inHand.Add((Lease)delivery.TransportState!);
        }

        // Counted before any can be settled, so the count never goes below what is really held.
        Interlocked.Add(ref _held, deliveries.Length - expired);
        foreach (var delivery in deliveries)
        {
            _channel.Writer.TryWrite(delivery);
        }
    }

    /// <summary>Raises the highest entry id this consumer has been given to <paramref name="id"/> if it is higher (loop only).</summary>
    private void NoteHighest(RedisValue id)
    {
        if (StreamIds.TryParse(id, out var ms, out var sequence) && (ms, sequence).CompareTo(_highestRead) > 0)
        {
            _highestRead = (ms, sequence);
        }
    }

    /// <summary>Ends the leases still held of the entries <paramref name="again"/> delivers again; returns how many.</summary>
    private int ExpireOlderLeases(ReceivedMessage[] again)
    {
        // Binary: hashing the bytes as they are, where the default comparer decodes each id into a string.
        var ids = new HashSet<RedisValue>(again.Length, RedisValue.EqualityComparer.Binary);
        foreach (var delivery in again)
        {
            ids.Add(((Lease)delivery.TransportState!).EntryId);
        }

        var expired = 0;
        foreach (var lease in _inHand)
        {
            if (ids.Contains(lease.EntryId) && lease.TryEnd())
            {
                expired++;
            }
        }

        return expired;
    }

    /// <summary>Ends a lease if it is still held, freeing its credit; false if it had ended already.</summary>
    private bool End(Lease lease)
    {
        if (!lease.TryEnd())
        {
            return false;
        }

        ReturnCredit();
        return true;
    }

    /// <summary>Frees the credit of a lease just ended, and wakes the loop to use it (and to send queued acks).</summary>
    private void ReturnCredit()
    {
        Interlocked.Decrement(ref _held);
        Wake();
    }

    private Task SetIdleAsync(RedisValue id, long idleMs)
        => _database.ScriptEvaluateAsync(RedisScripts.Nack, [_key], [_group, _consumer, id, idleMs]);

    /// <summary>Makes the loop look for claimable entries within <paramref name="delayMs"/>, from the start of the pending list.</summary>
    private void ClaimWithin(long delayMs)
    {
        Volatile.Write(ref _rescan, 1);
        var due = Environment.TickCount64 + delayMs;
        long current;
        while (due < (current = Volatile.Read(ref _claimAt)) && Interlocked.CompareExchange(ref _claimAt, due, current) != current)
        {
        }

        if (delayMs == 0)
        {
            Wake();
        }
    }

    private async Task DeferAsync(RedisValue id, long dueAt)
    {
        try
        {
            while (true)
            {
                var remaining = dueAt - Environment.TickCount64;
                if (remaining < _ackTimeoutMs)
                {
                    await SetIdleAsync(id, _ackTimeoutMs - Math.Max(0, remaining)).ConfigureAwait(false);
                    ClaimWithin(Math.Max(0, remaining));
                    return;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(Math.Max(1, Math.Min(remaining - _ackTimeoutMs + 1, _ackTimeoutMs / 2))), _stop.Token).ConfigureAwait(false);
                await SetIdleAsync(id, 0).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or RedisException or TimeoutException)
        {
            // Closed or failed: the entry stays pending and becomes claimable within one ack timeout.
        }
    }

    /// <summary>Ends the current back-off pause: there may be something to read or claim.</summary>
    public void Wake()
    {
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
            }
        }
    }

    /// <summary>
    /// One delivery of an entry. It ends once: settled, expired by a newer claim or read of the entry, or released on
    /// close. The entry id stays as StackExchange.Redis read it and is written back as it is in XACK; it becomes text
    /// only when the position is read (or, for an entry without an <c>id</c> field, when it is decoded: it is the
    /// message id then).
    /// </summary>
    private sealed class Lease(RedisValue entryId) : DeliveryHandle
    {
        private int _ended;

        public RedisValue EntryId { get; } = entryId;

        public bool IsHeld => Volatile.Read(ref _ended) == 0;

        public bool TryEnd() => Interlocked.Exchange(ref _ended, 1) == 0;

        public override string FormatPosition() => (string?)EntryId ?? "";
    }
}
