using System.Collections.Concurrent;
using static Bus.Conformance.CaseContext;

namespace Bus.Conformance.Cases;

/// <summary>ordering: per-key and total order, across consumers, under retry and after a crash.</summary>
internal static class OrderingCases
{
    public static IEnumerable<ConformanceCase> All =>
    [
        new("per_key_single_consumer", "ordering", BusFeatures.PerKeyOrdering, "8 keys × 250 interleaved, max in-flight 16: order kept per key", PerKeySingleConsumer),
        new("total_order_one_key", "ordering", BusFeatures.PerKeyOrdering, "1,000 messages of one key handled in publish order", TotalOrderOneKey),
        new("per_key_competing_consumers", "ordering", BusFeatures.OrderedAcrossConsumers | BusFeatures.CompetingConsumers, "per-key order holds across two consumers of one group", PerKeyCompetingConsumers),
        new("per_key_consumer_joins", "ordering", BusFeatures.OrderedAcrossConsumers | BusFeatures.CompetingConsumers, "per-key order holds while a second consumer joins the group mid-stream", PerKeyConsumerJoins),
        new("handler_outlasts_join", "ordering", BusFeatures.OrderedAcrossConsumers | BusFeatures.CompetingConsumers, "handlers still running when a second consumer joins are not overlapped by a second handler of their keys", HandlerOutlastsJoin),
        new("order_under_retry", "ordering", BusFeatures.OrderedRetry, "a nacked message holds back the later messages of its key", OrderUnderRetry),
        new("order_under_delayed_retry", "ordering", BusFeatures.OrderedRetry | BusFeatures.DelayedNack, "a message nacked with a delay holds back the later messages of its key until it is handled", OrderUnderDelayedRetry),
        new("per_key_after_consumer_dies", "ordering", BusFeatures.OrderedAcrossConsumers | BusFeatures.RedeliveryOfAbandoned, "after a consumer dies holding messages, its successor in the group handles each key from the first unhandled message on, in order", PerKeyAfterConsumerDies),
        new("no_gap_after_crash", "ordering", BusFeatures.None, "a consumer abandoned mid-stream leaves no gap for its successor", NoGapAfterCrash),
    ];

    /// <summary>
    /// Fails unless, for every one of <paramref name="keys"/> keys, the handled sequence is 0, 1, 2… with no gap or
    /// reordering, and <paramref name="total"/> distinct messages were handled in all (so no key lost its last ones).
    /// A repeat of the message a key handled last is a duplicate, not disorder; returns how many there were. With
    /// <paramref name="allowReplays"/>, a repeat of any earlier message of the key is a duplicate too: a group that moves
    /// a key to another consumer may deliver again from its last committed point (at-least-once), but never a message
    /// before an earlier one of its key was handled once.
    /// </summary>
    internal static int CheckPerKeyOrder(IReadOnlyList<(string Key, int Sequence)> handled, int keys, int total, bool allowReplays = false)
    {
        var next = new Dictionary<string, int>();
        var duplicates = 0;
        foreach (var (key, sequence) in handled)
        {
            var expected = next.GetValueOrDefault(key);
            if (sequence == expected)
            {
                next[key] = expected + 1;
            }
            else if (sequence == expected - 1 || (allowReplays && sequence < expected))
            {
                duplicates++;
            }
            else
            {
                throw new CaseFailedException($"key '{key}': handled sequence {sequence} when {expected} was next");
            }
        }

        Check(next.Count == keys, $"{next.Count} keys seen, expected {keys}");
        Check(next.Values.Sum() == total, $"{next.Values.Sum()} distinct messages handled in order, expected {total}: {string.Join(", ", next.OrderBy(k => k.Key, StringComparer.Ordinal).Select(k => $"{k.Key} up to {k.Value - 1}"))}");
        return duplicates;
    }

    /// <summary>Distinct (key, sequence) pairs handled so far. Under the caller's lock.</summary>
    private static int Distinct(List<(string, int)> handled) => handled.Distinct().Count();

    private static async Task PublishInterleavedAsync(CaseContext ctx, string topic, int keys, int perKey)
    {
        // Published in chunks so that each key's messages are confirmed in order while still pipelined.
        var all = Enumerable.Range(0, keys * perKey).Select(i => Numbered($"m{i}", $"key-{i % keys}", i / keys)).ToList();
        foreach (var chunk in all.Chunk(250))
        {
            await ctx.Bus.PublishBatchAsync(topic, chunk);
        }
    }

    private static async Task PerKeySingleConsumer(CaseContext ctx)
    {
        var topic = ctx.Topic("perkey");
        var handled = new List<(string, int)>();
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
        {
            lock (handled)
            {
                handled.Add((m.Key!, SequenceOf(m)));
            }

            if (SequenceOf(m) % 50 == 0)
            {
                await Task.Yield(); // some handlers go asynchronous, so keys really interleave
            }
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16 });
        await PublishInterleavedAsync(ctx, topic, 8, 250);
        await ctx.WaitUntilAsync(() => { lock (handled) { return Distinct(handled) >= 2000; } }, "2,000 messages", () => { lock (handled) { return $"{Distinct(handled)} distinct of {handled.Count}"; } });
        lock (handled)
        {
            var duplicates = CheckPerKeyOrder(handled, 8, 2000);
            ctx.Report("duplicates", duplicates);
            Check(duplicates == 0, $"{duplicates} messages handled twice by one consumer");
        }
    }

    private static async Task TotalOrderOneKey(CaseContext ctx)
    {
        var topic = ctx.Topic("total");
        var handled = new List<(string, int)>();
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, (m, _) =>
        {
            lock (handled)
            {
                handled.Add((m.Key!, SequenceOf(m)));
            }

            return default;
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16 });
        await PublishInterleavedAsync(ctx, topic, 1, 1000);
        await ctx.WaitUntilAsync(() => { lock (handled) { return Distinct(handled) >= 1000; } }, "1,000 messages", () => { lock (handled) { return $"{Distinct(handled)} distinct of {handled.Count}"; } });
        lock (handled)
        {
            var duplicates = CheckPerKeyOrder(handled, 1, 1000);
            ctx.Report("duplicates", duplicates);
            Check(duplicates == 0, $"{duplicates} messages handled twice by one consumer");
        }
    }

    private static async Task PerKeyCompetingConsumers(CaseContext ctx)
    {
        var topic = ctx.Topic("perkey-cc");
        var group = ctx.Group();
        var handled = new List<(string, int)>();
        var perConsumer = new int[2];
        var subscriptions = new List<ISubscription>();
        for (var i = 0; i < 2; i++)
        {
            var index = i;
            subscriptions.Add(await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
            {
                lock (handled)
                {
                    handled.Add((m.Key!, SequenceOf(m)));
                }

                Interlocked.Increment(ref perConsumer[index]);
                if (SequenceOf(m) % 25 == 0)
                {
                    await Task.Delay(1);
                }
            }, new SubscriptionOptions { Group = group, MaxInFlight = 16 }));
        }

        try
        {
            await PublishInterleavedAsync(ctx, topic, 8, 250);
            await ctx.WaitUntilAsync(() => { lock (handled) { return Distinct(handled) >= 2000; } }, "2,000 messages", () => { lock (handled) { return $"{Distinct(handled)} distinct of {handled.Count}"; } });
            lock (handled)
            {
                // Duplicates allowed (a rebalance as the second consumer joins may deliver some again), and reported.
                ctx.Report("duplicates", CheckPerKeyOrder(handled, 8, 2000));
            }

            ctx.Report("consumer_1", perConsumer[0]);
            ctx.Report("consumer_2", perConsumer[1]);
            Check(perConsumer[0] > 0 && perConsumer[1] > 0, $"one consumer handled everything ({perConsumer[0]} and {perConsumer[1]}): order across consumers was not tested");
        }
        finally
        {
            foreach (var subscription in subscriptions)
            {
                await subscription.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// One consumer is handling the stream when a second joins the group: where the backend moves keys to the newcomer
    /// (Kafka's partitions move in a rebalance, with messages the first consumer fetched and has not finished), no
    /// message may be handled before every earlier one of its key was, and no two handlers of one key may run at once,
    /// in either consumer. The handlers take 2 ms, far less than a rebalance, so a key that moves while a handler of it
    /// runs is not provoked here (Kafka's revocation waits for running handlers up to the ack timeout; a test of the
    /// adapter shows it with 8 s handlers). Messages are published in chunks over about 4 s and
    /// the second consumer subscribes after the third, while they flow. Replays are allowed and reported; the newcomer
    /// may get nothing (a backend that keeps every key with the first consumer), which is noted. On librdkafka's mock
    /// cluster the newcomer's join replays hundreds of messages: the mock refuses offset commits while the group
    /// rebalances (REBALANCE_IN_PROGRESS), where Kafka accepts them from the current generation until the members have
    /// rejoined, so nothing the first consumer acknowledged after the join was announced is committed.
    /// </summary>
    private static async Task PerKeyConsumerJoins(CaseContext ctx)
    {
        var topic = ctx.Topic("perkey-join");
        var options = new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16 };
        var handled = new List<(string, int)>();
        var perConsumer = new int[2];
        var running = new Dictionary<string, int>(StringComparer.Ordinal); // handlers running per key, in either consumer
        var overlaps = 0;
        Func<ReceivedMessage, CancellationToken, ValueTask> HandlerOf(int index) => async (m, _) =>
        {
            var key = m.Key!;
            lock (handled)
            {
                handled.Add((key, SequenceOf(m)));
                perConsumer[index]++;
                var now = running.GetValueOrDefault(key);
                if (now > 0)
                {
                    overlaps++;
                }

                running[key] = now + 1;
            }

            try
            {
                await Task.Delay(2); // a handler that takes a moment, so the first consumer holds messages as the second joins
            }
            finally
            {
                lock (handled)
                {
                    running[key]--;
                }
            }
        };

        var all = Enumerable.Range(0, 8 * 250).Select(i => Numbered($"m{i}", $"key-{i % 8}", i / 8)).ToList();
        var first = await ctx.Bus.SubscribeAsync(topic, HandlerOf(0), options);
        Task<ISubscription>? joining = null;
        try
        {
            var chunk = 0;
            foreach (var part in all.Chunk(200))
            {
                await ctx.Bus.PublishBatchAsync(topic, part);
                if (++chunk == 3)
                {
                    joining = ctx.Bus.SubscribeAsync(topic, HandlerOf(1), options).AsTask();
                }

                await Task.Delay(400);
            }

            await joining!;
            await ctx.WaitUntilAsync(() => { lock (handled) { return Distinct(handled) >= 2000; } }, "2,000 messages", () => { lock (handled) { return $"{Distinct(handled)} distinct of {handled.Count}"; } });
            lock (handled)
            {
                ctx.Report("duplicates", CheckPerKeyOrder(handled, 8, 2000, allowReplays: true));
            }

            int byFirst, byJoining, overlapping;
            lock (handled)
            {
                (byFirst, byJoining, overlapping) = (perConsumer[0], perConsumer[1], overlaps);
            }

            ctx.Report("first_consumer", byFirst);
            ctx.Report("joining_consumer", byJoining);
            ctx.Report("overlaps", overlapping);
            Check(overlapping == 0, $"{overlapping} times a handler started while another message of its key was being handled");
            if (byJoining == 0)
            {
                ctx.Note("the joining consumer handled nothing (the first kept every key): no key moved between consumers");
            }
        }
        finally
        {
            await first.DisposeAsync();
            if (joining is not null && await joining.ContinueWith(t => t.IsCompletedSuccessfully ? t.Result : null, TaskScheduler.Default) is { } second)
            {
                await second.DisposeAsync();
            }
        }
    }

    /// <summary>
    /// The first consumer is in the middle of 16 handlers, one per key, each taking 8 s, when a second consumer joins
    /// the group. Where keys move to the newcomer (a Kafka rebalance), the messages being handled must not be handled
    /// again while their first handler still runs: the backend waits for them (Kafka's revocation waits up to the ack
    /// timeout, 20 s here, and at most half the operation timeout) or keeps them with their holder (an SQS FIFO group
    /// stays invisible while a message of it is in flight). A later redelivery is allowed and counted (the Kafka mock
    /// refuses the commit made while the group rebalances, so there the new owners handle them again after the first
    /// handlers finished). 8 s is longer than a join takes on any backend here (about 5 s on the Kafka mock), so a
    /// backend that handed the keys over at once fails: Kafka did, for 12 of 32 keys in a test of the adapter, before
    /// its revocation waited.
    /// </summary>
    private static async Task HandlerOutlastsJoin(CaseContext ctx)
    {
        const int Keys = 16;
        var handlerTime = TimeSpan.FromSeconds(8);
        var topic = ctx.Topic("outlast-join");
        var options = new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 2 * Keys, AckTimeout = TimeSpan.FromSeconds(20) };
        var sync = new object();
        var running = new Dictionary<string, int>(StringComparer.Ordinal); // handlers running per key, in either consumer
        var firstRuns = new HashSet<string>(StringComparer.Ordinal);        // message ids whose first handler started
        var overlaps = new List<string>();
        var perConsumer = new int[2];
        int slowStarted = 0, slowEnded = 0, again = 0;
        Func<ReceivedMessage, CancellationToken, ValueTask> HandlerOf(int index) => async (m, _) =>
        {
            var key = m.Key!;
            bool isFirst;
            lock (sync)
            {
                perConsumer[index]++;
                var now = running.GetValueOrDefault(key);
                if (now > 0)
                {
                    overlaps.Add($"{key} (consumer {index + 1}, delivery {m.DeliveryCount})");
                }

                running[key] = now + 1;
                isFirst = firstRuns.Add(m.MessageId);
                if (isFirst)
                {
                    slowStarted++;
                }
                else
                {
                    again++;
                }
            }

            try
            {
                if (isFirst)
                {
                    await Task.Delay(handlerTime);
                }
            }
            finally
            {
                lock (sync)
                {
                    running[key]--;
                    if (isFirst)
                    {
                        slowEnded++;
                    }
                }
            }
        };

        var first = await ctx.Bus.SubscribeAsync(topic, HandlerOf(0), options);
        ISubscription? second = null;
        try
        {
            await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(0, Keys).Select(i => Numbered($"m{i}", $"key-{i}", 1)).ToList());
            await ctx.WaitUntilAsync(() => { lock (sync) { return slowStarted >= Keys; } }, $"the first consumer handling all {Keys} keys", () => { lock (sync) { return $"{slowStarted} started"; } });
            var joining = System.Diagnostics.Stopwatch.StartNew();
            second = await ctx.Bus.SubscribeAsync(topic, HandlerOf(1), options);
            ctx.Report("join_ms", (long)joining.Elapsed.TotalMilliseconds);
            await ctx.WaitUntilAsync(() => { lock (sync) { return slowEnded >= Keys; } }, $"the {Keys} slow handlers ending", () => { lock (sync) { return $"{slowEnded} ended"; } }, handlerTime + ctx.WaitTimeout);
            await Task.Delay(ctx.QuietPeriod); // redeliveries, if any, are handled meanwhile
            lock (sync)
            {
                ctx.Report("handled_again", again);
                ctx.Report("joining_consumer", perConsumer[1]);
                Check(overlaps.Count == 0, $"{overlaps.Count} handlers started while their key's first handler was still running: {string.Join(", ", overlaps.Take(8))}");
            }
        }
        finally
        {
            await first.DisposeAsync();
            if (second is not null)
            {
                await second.DisposeAsync();
            }
        }
    }

    private static async Task OrderUnderRetry(CaseContext ctx)
    {
        var topic = ctx.Topic("retry-order");
        var events = new List<string>();
        var nacks = 0;
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
        {
            var sequence = SequenceOf(m);
            if (sequence == 1 && Interlocked.Increment(ref nacks) <= 2)
            {
                lock (events)
                {
                    events.Add("nack K1");
                }

                await m.NackAsync();
                return;
            }

            lock (events)
            {
                events.Add($"K{sequence}");
            }
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16 });
        await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(1, 10).Select(i => Numbered($"K{i}", "K", i)).ToList());
        await ctx.WaitUntilAsync(() => { lock (events) { return events.Count(e => !e.StartsWith("nack", StringComparison.Ordinal)) >= 10; } }, "K1..K10 handled", () => string.Join(", ", events));
        lock (events)
        {
            var order = string.Join(", ", events);
            ctx.Report("nacks", nacks >= 2 ? 2 : nacks);
            Check(events.Take(3).SequenceEqual(["nack K1", "nack K1", "K1"]), $"K1 must be nacked twice and acked before anything else of its key; observed: {order}");
            Check(events.Skip(3).Take(9).SequenceEqual(Enumerable.Range(2, 9).Select(i => $"K{i}")), $"K2..K10 out of order; observed: {order}");
        }
    }

    /// <summary>
    /// As <see cref="OrderUnderRetry"/>, with the nack delayed by 1 s: every backend emulates a delayed nack its own way
    /// (held in the consumer on Kafka and RabbitMQ, a visibility timeout on SQS, a due time on memory://), and a delay
    /// that moved the message behind the later ones of its key, or let them pass while it waited, would break the order
    /// that an immediate nack keeps.
    /// </summary>
    private static async Task OrderUnderDelayedRetry(CaseContext ctx)
    {
        var topic = ctx.Topic("delayed-retry-order");
        var delay = TimeSpan.FromSeconds(1);
        var events = new List<string>();
        var nackedAt = 0L;
        var redeliveredAt = 0L;
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
        {
            var sequence = SequenceOf(m);
            if (sequence == 1 && Interlocked.CompareExchange(ref nackedAt, System.Diagnostics.Stopwatch.GetTimestamp(), 0) == 0)
            {
                lock (events)
                {
                    events.Add("nack K1");
                }

                await m.NackAsync(delay);
                return;
            }

            lock (events)
            {
                if (sequence == 1)
                {
                    redeliveredAt = System.Diagnostics.Stopwatch.GetTimestamp();
                }

                events.Add($"K{sequence}");
            }
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16 });
        await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(1, 10).Select(i => Numbered($"K{i}", "K", i)).ToList());
        await ctx.WaitUntilAsync(() => { lock (events) { return events.Count(e => !e.StartsWith("nack", StringComparison.Ordinal)) >= 10; } }, "K1..K10 handled", () => { lock (events) { return string.Join(", ", events); } });
        await Task.Delay(ctx.QuietPeriod); // a late duplicate, if any, shows in the order below
        lock (events)
        {
            var order = string.Join(", ", events);
            var waited = System.Diagnostics.Stopwatch.GetElapsedTime(nackedAt, redeliveredAt);
            ctx.Report("redelivered_after_ms", (long)waited.TotalMilliseconds);
            Check(events.SequenceEqual(Enumerable.Range(1, 10).Select(i => $"K{i}").Prepend("nack K1")), $"K1 must be nacked, then handled before K2..K10 in order, each once; observed: {order}");
            Check(waited >= delay - TimeSpan.FromMilliseconds(50), $"K1 came back {waited.TotalMilliseconds:0} ms after its nack with a delay of {delay.TotalSeconds:0} s");
        }
    }

    /// <summary>
    /// A consumer handles part of 8 keys × 50 and dies holding a few messages unsettled (disposed without settling
    /// them). Its successor must start each key where it was left: the held message first, then the later ones of its
    /// key, never a later one before it. A backend that hands out the stream's new messages while the dead consumer's
    /// held ones wait for a lease to run out breaks per-key order here, where no_gap_after_crash only counts gaps.
    /// Replays of messages already handled are allowed and counted. The successor is another consumer, so the case needs
    /// OrderedAcrossConsumers: run with PerKeyOrdering alone, it failed in 3 of 10 runs on RabbitMQ quorum queues (a
    /// key's message 14 before 13; 0 of 10 on classic queues), where the successor most likely took a message from the
    /// queue before the quorum queue had returned the closed consumer's held ones.
    /// </summary>
    private static async Task PerKeyAfterConsumerDies(CaseContext ctx)
    {
        const int Keys = 8, PerKey = 50;
        var topic = ctx.Topic("perkey-crash");
        var options = new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16, AckTimeout = TimeSpan.FromSeconds(2) };
        var handled = new List<(string Key, int Sequence)>();
        var distinct = new HashSet<(string, int)>();
        var first = await ctx.Bus.CreateConsumerAsync(topic, options);
        await PublishInterleavedAsync(ctx, topic, Keys, PerKey);
        for (var i = 0; i < 100; i++)
        {
            var message = await ctx.ReceiveAsync(first, $"message {i + 1} of the first 100");
            handled.Add((message.Key!, SequenceOf(message)));
            distinct.Add(handled[^1]);
            await message.AckAsync();
        }

        var held = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            if (await ctx.ReceiveWithinAsync(first, TimeSpan.FromMilliseconds(200)) is { } message)
            {
                held.Add($"{message.Key}#{SequenceOf(message)}");
            }
        }

        ctx.Report("held_at_crash", held.Count);
        await first.DisposeAsync();

        await using var second = await ctx.Bus.CreateConsumerAsync(topic, options);
        while (distinct.Count < Keys * PerKey)
        {
            var message = await ctx.ReceiveAsync(second, $"the successor's messages ({distinct.Count} of {Keys * PerKey} handled; held at the crash: {string.Join(", ", held)})");
            handled.Add((message.Key!, SequenceOf(message)));
            distinct.Add(handled[^1]);
            await message.AckAsync();
        }

        ctx.Report("duplicates", CheckPerKeyOrder(handled, Keys, Keys * PerKey, allowReplays: true));
    }

    private static async Task NoGapAfterCrash(CaseContext ctx)
    {
        var topic = ctx.Topic("nogap");
        var group = ctx.Group();
        var options = new SubscriptionOptions { Group = group, MaxInFlight = 16, AckTimeout = TimeSpan.FromSeconds(2) };
        var first = await ctx.Bus.CreateConsumerAsync(topic, options);
        await PublishInterleavedAsync(ctx, topic, 1, 500);
        var handled = new ConcurrentDictionary<int, int>();
        for (var i = 0; i < 200; i++)
        {
            var message = await ctx.ReceiveAsync(first, $"message {i + 1} of the first 200");
            handled.AddOrUpdate(SequenceOf(message), 1, (_, n) => n + 1);
            await message.AckAsync();
        }

        // Take a few more without settling, then crash: these are not handled (the successor must deliver them).
        var unsettled = 0;
        for (var i = 0; i < 5; i++)
        {
            if (await ctx.ReceiveWithinAsync(first, TimeSpan.FromMilliseconds(200)) is not null)
            {
                unsettled++;
            }
        }

        ctx.Report("unsettled_at_crash", unsettled);

        await first.DisposeAsync();
        await using var second = await ctx.Bus.CreateConsumerAsync(topic, options);
        await ctx.WaitUntilAsync(() => TryTake(second, handled), "sequences 0..499", () => $"{handled.Count} distinct");
        var missing = Enumerable.Range(0, 500).Where(s => !handled.ContainsKey(s)).ToList();
        Check(missing.Count == 0, $"gap: {missing.Count} sequences never handled, first {string.Join(", ", missing.Take(5))}");
        ctx.Report("duplicates", handled.Values.Sum(n => n - 1));
    }

    /// <summary>Drains what the consumer has ready (acking it) and reports whether every sequence is now handled.</summary>
    private static bool TryTake(MessageConsumer consumer, ConcurrentDictionary<int, int> handled)
    {
        while (consumer.TryReceive(out var message))
        {
            handled.AddOrUpdate(SequenceOf(message), 1, (_, n) => n + 1);
            _ = message.AckAsync().AsTask();
        }

        return handled.Count >= 500;
    }
}
