using System.Collections.Concurrent;
using static Bus.Conformance.CaseContext;

namespace Bus.Conformance.Cases;

/// <summary>delivery: what arrives, how often, and with what.</summary>
internal static class DeliveryCases
{
    public static IEnumerable<ConformanceCase> All =>
    [
        new("round_trip", "delivery", BusFeatures.None, "bodies, key, headers and ids arrive byte for byte", RoundTrip),
        new("header_edge_cases", "delivery", BusFeatures.None, "awkward headers and a long key round-trip exactly: empty values, names differing only in case, control and escape characters, 4 KiB values, 40 headers", HeaderEdgeCases),
        new("all_received", "delivery", BusFeatures.None, "1,000 published, 1,000 distinct ids consumed and acked", AllReceived),
        new("ack_removes", "delivery", BusFeatures.None, "an acked message is not delivered to the group again", AckRemoves),
        new("nack_redelivers", "delivery", BusFeatures.None, "nacked twice, delivered three times with counts 1, 2, 3", NackRedelivers),
        new("nack_with_delay", "delivery", BusFeatures.DelayedNack, "a nack with a 3 s delay redelivers the message after 3 s, not before, while other messages flow", NackWithDelay),
        new("delayed_nack_survives_close", "delivery", BusFeatures.DelayedNack | BusFeatures.RedeliveryOfAbandoned, "a message nacked with a delay is delivered again when its consumer closes before the delay is over", DelayedNackSurvivesClose),
        new("redelivered_after_consumer_dies", "delivery", BusFeatures.RedeliveryOfAbandoned | BusFeatures.CompetingConsumers, "an abandoned delivery reaches another consumer of the group", RedeliveredAfterConsumerDies),
        new("late_nack_after_ack_timeout", "delivery", BusFeatures.AckTimeoutRedelivery, "a nack of a delivery whose ack timeout has passed does not fail and does not hand out the message while its new delivery is held", LateNackAfterAckTimeout),
        new("redelivered_after_ack_timeout", "delivery", BusFeatures.AckTimeoutRedelivery, "a delivery kept unsettled past the ack timeout by a live consumer is delivered again, not before", RedeliveredAfterAckTimeout),
        new("cancelled_receives_lose_nothing", "delivery", BusFeatures.None, "receives cancelled at random moments while 200 messages arrive take none of them away", CancelledReceivesLoseNothing),
        new("group_outlives_its_consumers", "delivery", BusFeatures.None, "a group keeps its place while it has no consumer: the next one gets what was published meanwhile, and a new group does not get what came before it", GroupOutlivesItsConsumers),
        new("competing_consumers", "delivery", BusFeatures.CompetingConsumers, "two consumers of one group share 200 messages with none lost", CompetingConsumers),
        new("fan_out_groups", "delivery", BusFeatures.FanOutToGroups, "two groups each receive all 100", FanOutGroups),
        new("batch_publish", "delivery", BusFeatures.None, "a batch of 500 over 8 keys arrives whole (and in order per key where the backend keeps it)", BatchPublish),
        new("max_in_flight", "delivery", BusFeatures.None, "never more than max in-flight handlers at once", MaxInFlight),
        new("graceful_shutdown", "delivery", BusFeatures.None, "dispose waits for running handlers and loses nothing", GracefulShutdown),
        new("publishes_then_dispose", "delivery", BusFeatures.None, "a bus disposed with 200 publishes in flight waits for them all; each one is confirmed and arrives", PublishesThenDispose),
        new("delayed", "delivery", BusFeatures.DelayedDelivery, "a 2 s delayed message is not delivered before 2 s", Delayed),
        new("request_reply", "delivery", BusFeatures.RequestReply, "a reply arrives with the request's correlation id", RequestReply),
    ];

    private static async Task RoundTrip(CaseContext ctx)
    {
        var topic = ctx.Topic("round-trip");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        var random = new byte[64 * 1024];
        new Random(42).NextBytes(random);
        var full = new OutgoingMessage(new byte[] { 1, 2, 3 })
        {
            Key = "k-ü",
            CorrelationId = "corr-" + Guid.NewGuid().ToString("N"),
            ContentType = "application/x-bus-test",
        };
        full.Headers["h-ascii"] = "v";
        full.Headers["h-utf8"] = "ünïcødé ✓";
        OutgoingMessage[] sent =
        [
            new(ReadOnlyMemory<byte>.Empty),
            new(Enumerable.Range(0, 256).Select(i => (byte)i).ToArray()),
            new(random),
            full,
        ];
        foreach (var message in sent)
        {
            await ctx.Bus.PublishAsync(topic, message);
        }

        var received = new Dictionary<string, ReceivedMessage>();
        while (received.Count < sent.Length)
        {
            var message = await ctx.ReceiveAsync(consumer, $"message {received.Count + 1} of {sent.Length}");
            Check(received.TryAdd(message.MessageId, message), $"message {message.MessageId} arrived twice");
            await message.AckAsync();
        }

        foreach (var expected in sent)
        {
            Check(received.TryGetValue(expected.MessageId!, out var actual), $"message {expected.MessageId} never arrived");
            var label = $"message of {expected.Body.Length} bytes";
            Check(actual!.Body.Span.SequenceEqual(expected.Body.Span), $"{label}: body differs ({actual.Body.Length} bytes arrived)");
            CheckEqual(expected.Key, actual.Key, $"{label}: key");
            CheckEqual(expected.CorrelationId, actual.CorrelationId, $"{label}: correlation id");
            CheckEqual(expected.ContentType, actual.ContentType, $"{label}: content type");
            CheckEqual(topic, actual.Topic, $"{label}: topic");
            CheckEqual(1, actual.DeliveryCount, $"{label}: delivery count");
            Check(!string.IsNullOrEmpty(actual.Position), $"{label}: no position");
            foreach (var (name, value) in expected.HasHeaders ? expected.Headers : new Dictionary<string, string>())
            {
                Check(actual.Headers.TryGetValue(name, out var got), $"{label}: header '{name}' missing");
                CheckEqual(value, got, $"{label}: header '{name}'");
            }
        }
    }

    private static async Task AllReceived(CaseContext ctx)
    {
        var topic = ctx.Topic("all");
        var seen = new ConcurrentDictionary<string, int>();
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, (m, _) =>
        {
            seen.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1);
            return default;
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 64 });

        var ids = new HashSet<string>();
        var publishing = new List<Task>();
        for (var i = 0; i < 1000; i++)
        {
            var message = Numbered($"m{i}", null, i);
            publishing.Add(ctx.Bus.PublishAsync(topic, message).AsTask());
            ids.Add(message.MessageId!);
            if (publishing.Count == 64)
            {
                await Task.WhenAll(publishing);
                publishing.Clear();
            }
        }

        await Task.WhenAll(publishing);
        Check(ids.Count == 1000, $"message ids were not distinct: {ids.Count} of 1000");
        await ctx.WaitUntilAsync(() => ids.All(seen.ContainsKey), "all 1,000 ids", () => $"{ids.Count(seen.ContainsKey)} of 1000");
        await Task.Delay(ctx.QuietPeriod / 3); // a duplicate would come soon after
        var duplicates = seen.Values.Sum(n => n - 1);
        ctx.Report("duplicates", duplicates);
        Check(duplicates == 0, $"{duplicates} messages handled twice by one consumer");
    }

    private static async Task AckRemoves(CaseContext ctx)
    {
        var topic = ctx.Topic("ack");
        var group = ctx.Group();
        var first = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(group));
        await ctx.Bus.PublishAsync(topic, "once");
        var message = await ctx.ReceiveAsync(first, "the message");
        await message.AckAsync();
        await first.DisposeAsync();

        await using var second = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(group));
        var again = await ctx.ReceiveWithinAsync(second);
        Check(again is null, $"acked message {message.MessageId} was delivered again (delivery count {again?.DeliveryCount})");
    }

    private static async Task NackRedelivers(CaseContext ctx)
    {
        var topic = ctx.Topic("nack");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        await ctx.Bus.PublishAsync(topic, "again");
        var counts = new List<int>();
        for (var attempt = 1; attempt <= 3; attempt++)
        {
            var message = await ctx.ReceiveAsync(consumer, $"delivery {attempt}");
            counts.Add(message.DeliveryCount);
            if (attempt < 3)
            {
                await message.NackAsync();
            }
            else
            {
                await message.AckAsync();
            }
        }

        ctx.Report("deliveries", counts.Count);
        if (ctx.Capabilities.Supports(BusFeatures.ExactDeliveryCount))
        {
            Check(counts.SequenceEqual([1, 2, 3]), $"delivery counts were {string.Join(", ", counts)}, expected 1, 2, 3");
        }
        else
        {
            Check(counts[0] == 1 && counts[1] >= 2 && counts[2] >= 2, $"delivery counts were {string.Join(", ", counts)}, expected 1 then redelivered");
            ctx.Note($"counts {string.Join(", ", counts)}: {ctx.Capabilities.ExplainMissing(BusFeatures.ExactDeliveryCount)}");
        }

        Check(await ctx.ReceiveWithinAsync(consumer, TimeSpan.FromMilliseconds(500)) is null, "the acked message arrived a fourth time");
    }

    private static async Task NackWithDelay(CaseContext ctx)
    {
        var topic = ctx.Topic("nack-delay");
        // Whole seconds (SQS's visibility timeout counts them), and long enough that a backend that polls (the Kafka mock
        // answers an empty fetch only after 500 ms) still brings the other key's message well before the delay is due.
        var delay = TimeSpan.FromSeconds(3);
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        await ctx.Bus.PublishAsync(topic, OutgoingMessage.FromText("later", "key-later"));
        var first = await ctx.ReceiveAsync(consumer, "the first delivery");
        // Started before the nack: the delay cannot start earlier, so "not before" is measured safely.
        var sinceNack = System.Diagnostics.Stopwatch.StartNew();
        await first.NackAsync(delay);

        // A message of another key is not held back by the delayed one (on backends that keep per-key order, only the
        // nacked message's own key waits).
        var other = OutgoingMessage.FromText("meanwhile", "key-other");
        await ctx.Bus.PublishAsync(topic, other);
        var next = await ctx.ReceiveAsync(consumer, "the message published after the nack");
        var otherFirst = next.MessageId == other.MessageId;
        ctx.Report("other_key_first", otherFirst ? 1 : 0);
        ReceivedMessage again;
        if (otherFirst)
        {
            ctx.Report("other_key_ms", (long)sinceNack.Elapsed.TotalMilliseconds);
            Check(sinceNack.Elapsed < delay, $"the message of another key arrived {sinceNack.Elapsed.TotalMilliseconds:0} ms after the nack, not before the delayed one was due: it was held back");
            await next.AckAsync();
            again = await ctx.ReceiveAsync(consumer, "the delayed redelivery");
        }
        else
        {
            again = next;
        }

        CheckRedelivery(ctx, first, again, sinceNack.Elapsed, delay, "the nack with a delay of");
        await again.AckAsync();
        if (!otherFirst)
        {
            var late = await ctx.ReceiveAsync(consumer, "the message published after the nack");
            CheckEqual(other.MessageId, late.MessageId, "the message published after the nack");
            await late.AckAsync();
            Check(false, "the message of another key was held back until the delayed one was redelivered");
        }
    }

    /// <summary>
    /// A consumer nacks a message with a delay and closes before the delay is over (an application shutting down
    /// between retries). Where the backend emulates the delay in the consumer (holding the delivery, or keeping the
    /// message in memory), closing must hand the message back to the group, not drop it. Not checked: when it comes
    /// back (some backends return it at once on close; RabbitMQ, for one), which is reported.
    /// </summary>
    private static async Task DelayedNackSurvivesClose(CaseContext ctx)
    {
        var topic = ctx.Topic("nack-close");
        var options = new SubscriptionOptions { Group = ctx.Group(), AckTimeout = TimeSpan.FromSeconds(2) };
        var nacked = OutgoingMessage.FromText("nacked, then its consumer closed", "key-nacked");
        var sinceNack = new System.Diagnostics.Stopwatch();
        await using (var leaving = await ctx.Bus.CreateConsumerAsync(topic, options))
        {
            await ctx.Bus.PublishAsync(topic, nacked);
            var first = await ctx.ReceiveAsync(leaving, "the first delivery");
            CheckEqual(nacked.MessageId, first.MessageId, "the first delivery");
            sinceNack.Start();
            await first.NackAsync(TimeSpan.FromSeconds(3));
        }

        ctx.Report("closed_after_ms", sinceNack.ElapsedMilliseconds);
        await using var successor = await ctx.Bus.CreateConsumerAsync(topic, options);
        var again = await ctx.ReceiveAsync(successor, "the nacked message, from a new consumer of the group");
        ctx.Report("redelivered_after_ms", sinceNack.ElapsedMilliseconds);
        ctx.Report("delivery_count", again.DeliveryCount);
        CheckEqual(nacked.MessageId, again.MessageId, "the redelivered message");
        Check(again.DeliveryCount >= 2, $"the redelivery has delivery count {again.DeliveryCount}, expected at least 2");
        await again.AckAsync();
        var extra = await ctx.ReceiveWithinAsync(successor);
        Check(extra is null, $"message {extra?.MessageId} (delivery count {extra?.DeliveryCount}) arrived after the redelivery was acknowledged");
    }

    /// <summary>
    /// Checks that <paramref name="again"/> is <paramref name="first"/> delivered again, with a count of at least 2, and
    /// no sooner than <paramref name="notBefore"/> after the moment <paramref name="elapsed"/> is measured from (named
    /// by <paramref name="since"/> in the failure); reports when it came and its count.
    /// </summary>
    private static void CheckRedelivery(CaseContext ctx, ReceivedMessage first, ReceivedMessage again, TimeSpan elapsed, TimeSpan notBefore, string since)
    {
        CheckEqual(first.MessageId, again.MessageId, "redelivered message id");
        ctx.Report("redelivered_after_ms", (long)elapsed.TotalMilliseconds);
        ctx.Report("delivery_count", again.DeliveryCount);
        // 50 ms of slack for clocks that tick coarsely (the embedded backend's deadlines use Environment.TickCount64).
        Check(elapsed >= notBefore - TimeSpan.FromMilliseconds(50), $"delivered again {elapsed.TotalMilliseconds:0} ms after {since} {notBefore.TotalMilliseconds:0} ms");
        Check(again.DeliveryCount >= 2, $"the redelivery has delivery count {again.DeliveryCount}, expected at least 2");
    }

    /// <summary>
    /// What applications put in headers beyond the plain ASCII of round_trip: each backend carries headers its own way
    /// (AMQP tables, Kafka record headers, stream fields, a JSON attribute on SQS), and each way has characters or
    /// shapes it could change.
    /// </summary>
    private static async Task HeaderEdgeCases(CaseContext ctx)
    {
        var topic = ctx.Topic("headers");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        var sent = OutgoingMessage.FromText("headers", string.Concat(Enumerable.Repeat("key/ü:日本 ", 20)));
        var headers = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["empty"] = "",
            ["Case"] = "upper",
            ["case"] = "lower",
            ["with space: and colon"] = "v",
            ["line-breaks"] = "line 1\nline 2\r\nline 3\ttabbed",
            ["punctuation"] = "\"'\\{}[]<>&%=;,#",
            ["nul"] = "a\0b",
            ["ünï-näme ✓"] = "ünïcødé ✓ 日本語 😀",
            ["long"] = string.Concat(Enumerable.Repeat("0123456789abcdef", 256)),
            ["x-application"] = "an application's own x- header",
        };
        for (var i = 0; i < 30; i++)
        {
            headers[$"h-{i:00}"] = $"value {i}";
        }

        foreach (var (name, value) in headers)
        {
            sent.Headers[name] = value;
        }

        await ctx.Bus.PublishAsync(topic, sent);
        var received = await ctx.ReceiveAsync(consumer, "the message");
        await received.AckAsync();
        CheckEqual(sent.MessageId, received.MessageId, "message id");
        CheckEqual(sent.Key, received.Key, "key of 200 characters");
        var wrong = headers.Where(h => !received.Headers.TryGetValue(h.Key, out var got) || got != h.Value).Select(h => h.Key).ToList();
        ctx.Report("headers_sent", headers.Count);
        ctx.Report("headers_received", received.Headers.Count);
        Check(wrong.Count == 0, $"{wrong.Count} of {headers.Count} headers missing or changed: {string.Join(", ", wrong.Take(8).Select(n => $"'{Shorten(n)}' = '{Shorten(received.Headers.TryGetValue(n, out var got) ? got : "(missing)")}'"))}");
    }

    private static string Shorten(string text) => (text.Length > 40 ? text[..40] + "…" : text).ReplaceLineEndings("⏎").Replace("\0", "\\0", StringComparison.Ordinal);

    private static async Task RedeliveredAfterConsumerDies(CaseContext ctx)
    {
        var topic = ctx.Topic("dies");
        var group = ctx.Group();
        var options = new SubscriptionOptions { Group = group, AckTimeout = TimeSpan.FromSeconds(2) };
        var doomed = await ctx.Bus.CreateConsumerAsync(topic, options);
        await ctx.Bus.PublishAsync(topic, "survivor");
        var first = await ctx.ReceiveAsync(doomed, "the first delivery");
        await using var heir = await ctx.Bus.CreateConsumerAsync(topic, options);
        await doomed.DisposeAsync(); // abandoned without settling

        var again = await ctx.ReceiveAsync(heir, "the redelivery to the other consumer");
        CheckEqual(first.MessageId, again.MessageId, "redelivered message id");
        ctx.Report("delivery_count", again.DeliveryCount);
        Check(again.DeliveryCount >= 2, $"the redelivery has delivery count {again.DeliveryCount}, expected at least 2");
        await again.AckAsync();
    }

    private static async Task RedeliveredAfterAckTimeout(CaseContext ctx)
    {
        var topic = ctx.Topic("lease");
        // Whole seconds for SQS's visibility timeout, and 2 s rather than 1: after the redelivery, both acks (round trips
        // included) must land within its lease, or the message is delivered a third time; a loaded CI machine can starve
        // a test process for hundreds of milliseconds.
        var ackTimeout = TimeSpan.FromSeconds(2);
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = ctx.Group(), AckTimeout = ackTimeout });
        // Started before the publish: the lease cannot start earlier, so "not before the ack timeout" is measured safely
        // even where the transport took the message before the application received it.
        var sincePublish = System.Diagnostics.Stopwatch.StartNew();
        await ctx.Bus.PublishAsync(topic, "held");
        var first = await ctx.ReceiveAsync(consumer, "the first delivery");

        // Kept unsettled while the consumer stays open and goes on receiving: a handler that hangs, not a consumer that died.
        var again = await ctx.ReceiveAsync(consumer, "the delivery again after the ack timeout");
        CheckRedelivery(ctx, first, again, sincePublish.Elapsed, ackTimeout, "the publish, with an ack timeout of");

        // The late settlement of the expired delivery is an ordinary event (a slow handler finishing): it must not fail.
        await first.AckAsync();
        await again.AckAsync();
        Check(await ctx.ReceiveWithinAsync(consumer, ackTimeout + ctx.QuietPeriod) is null, "the message was delivered a third time after both deliveries were acked");
    }

    /// <summary>
    /// A handler that outlived its ack timeout gives up on the message (nacks it) after the message was delivered again.
    /// The nack concerns a delivery that has ended: it must not fail, and must not take the message from the delivery
    /// that replaced it (a backend that applied it to the message would hand it out a third time at once).
    /// </summary>
    private static async Task LateNackAfterAckTimeout(CaseContext ctx)
    {
        var topic = ctx.Topic("late-nack");
        // Whole seconds for SQS, and long enough that the nack's round trip and the window below fit in the new lease.
        var ackTimeout = TimeSpan.FromSeconds(3);
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = ctx.Group(), AckTimeout = ackTimeout });
        await ctx.Bus.PublishAsync(topic, "held");
        var first = await ctx.ReceiveAsync(consumer, "the first delivery");
        var again = await ctx.ReceiveAsync(consumer, "the delivery again after the ack timeout");
        var leased = System.Diagnostics.Stopwatch.StartNew();
        CheckEqual(first.MessageId, again.MessageId, "redelivered message id");
        Check(again.DeliveryCount >= 2, $"the redelivery has delivery count {again.DeliveryCount}, expected at least 2");

        try
        {
            await first.NackAsync();
        }
        catch (Exception ex) when (ex is not CaseFailedException)
        {
            throw new CaseFailedException($"the nack of the expired delivery failed: {ex.GetType().Name}: {ex.Message}");
        }

        // Until half the ack timeout after the redelivery: its lease still runs, so nothing may come.
        var stolen = await ctx.ReceiveWithinAsync(consumer, TimeSpan.FromTicks(Math.Max(0, (ackTimeout / 2 - leased.Elapsed).Ticks)));
        Check(stolen is null, $"the late nack handed the message out again (delivery count {stolen?.DeliveryCount}) while its new delivery was held");
        await again.AckAsync();
        var third = await ctx.ReceiveWithinAsync(consumer, ackTimeout + ctx.QuietPeriod);
        Check(third is null, $"the message was delivered again (delivery count {third?.DeliveryCount}) after its new delivery was acked");
    }

    /// <summary>
    /// A group is the durable part, its consumers come and go: what is published while a group has no consumer waits for
    /// its next one, whose start position (latest, the default) is ignored because the group already has a position. A
    /// message published before the group existed is not delivered to it (latest). Each backend keeps a group its own way
    /// (a queue on RabbitMQ and SQS, a consumer group on Redis, committed offsets on Kafka).
    /// </summary>
    private static async Task GroupOutlivesItsConsumers(CaseContext ctx)
    {
        var topic = ctx.Topic("resume");
        await ctx.Bus.EnsureTopicAsync(topic);
        await ctx.Bus.PublishAsync(topic, Numbered("before the group", null, 0));
        var options = new SubscriptionOptions { Group = ctx.Group(), PerKeyOrdering = false };
        await using (var consumer = await ctx.Bus.CreateConsumerAsync(topic, options))
        {
            await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(1, 5).Select(i => Numbered($"m{i}", null, i)).ToList());
            await ReceiveExactlyAsync(consumer, 1, 5, "the group's first consumer");
        }

        // Published while the group has no consumer.
        await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(6, 5).Select(i => Numbered($"m{i}", null, i)).ToList());
        await using (var consumer = await ctx.Bus.CreateConsumerAsync(topic, options))
        {
            await ReceiveExactlyAsync(consumer, 6, 10, "the group's next consumer");
        }

        async Task ReceiveExactlyAsync(MessageConsumer consumer, int from, int to, string who)
        {
            var sequences = new List<int>();
            for (var i = from; i <= to; i++)
            {
                var message = await ctx.ReceiveAsync(consumer, $"message {sequences.Count + 1} of m{from}..m{to} by {who}");
                sequences.Add(SequenceOf(message));
                await message.AckAsync();
            }

            var extra = await ctx.ReceiveWithinAsync(consumer);
            if (extra is not null)
            {
                sequences.Add(SequenceOf(extra));
            }

            sequences.Sort();
            Check(sequences.SequenceEqual(Enumerable.Range(from, to - from + 1)), $"{who} received [{string.Join(", ", sequences)}]; expected m{from}..m{to} exactly (0 is the message published before the group existed)");
        }
    }

    private static async Task CancelledReceivesLoseNothing(CaseContext ctx)
    {
        var topic = ctx.Topic("cancelled");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = ctx.Group(), PerKeyOrdering = false });
        var batch = Enumerable.Range(0, 200).Select(i => Numbered($"m{i}", null, i)).ToList();
        foreach (var message in batch)
        {
            message.MessageId = Guid.NewGuid().ToString("N"); // known before the publishing starts
        }

        var ids = batch.Select(m => m.MessageId!).ToHashSet();
        var received = new HashSet<string>();
        var cancelled = 0;
        var random = new Random(7);
        var publishing = Task.Run(async () =>
        {
            foreach (var chunk in batch.Chunk(20))
            {
                await ctx.Bus.PublishBatchAsync(topic, chunk);
                await Task.Delay(5);
            }
        });

        // Each receive gives up after 0–3 ms, so that many end while a message is on its way to the consumer.
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!ids.IsSubsetOf(received) && watch.Elapsed < ctx.WaitTimeout)
        {
            using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(random.Next(0, 4)));
            try
            {
                var message = await consumer.ReceiveAsync(soon.Token);
                received.Add(message.MessageId);
                await message.AckAsync();
            }
            catch (OperationCanceledException) when (soon.IsCancellationRequested)
            {
                cancelled++;
            }
        }

        await publishing;
        ctx.Report("cancelled_receives", cancelled);
        ctx.Report("received", received.Count);
        Check(ids.IsSubsetOf(received), $"{ids.Count(id => !received.Contains(id))} of 200 messages never arrived within {ctx.WaitTimeout.TotalSeconds:0} s while receives were being cancelled ({cancelled} cancelled)");
        Check(cancelled > 0, "no receive was cancelled: the case tested nothing");
    }

    private static async Task CompetingConsumers(CaseContext ctx)
    {
        var topic = ctx.Topic("compete");
        var group = ctx.Group();
        var byConsumer = new[] { new ConcurrentBag<string>(), new ConcurrentBag<string>() };
        // Handlers hold their messages until both consumers have one (or a third of the case's wait has passed): a
        // consumer can then hold at most its max in-flight (16), and the other must get the rest. Without the gate, a
        // consumer whose polling a loaded machine starved for a while could find all 200 taken by the other.
        var bothHaveOne = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _ = Task.Delay(ctx.WaitTimeout / 3).ContinueWith(_ => bothHaveOne.TrySetResult(), TaskScheduler.Default);
        var subscriptions = new List<ISubscription>();
        for (var i = 0; i < 2; i++)
        {
            var bag = byConsumer[i];
            subscriptions.Add(await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
            {
                bag.Add(m.MessageId);
                if (!byConsumer[0].IsEmpty && !byConsumer[1].IsEmpty)
                {
                    bothHaveOne.TrySetResult();
                }

                await bothHaveOne.Task;
            }, SubscriptionOptions.ForGroup(group)));
        }

        try
        {
            var batch = Enumerable.Range(0, 200).Select(i => Numbered($"m{i}", $"key-{i}", i)).ToList();
            await ctx.Bus.PublishBatchAsync(topic, batch);
            var ids = batch.Select(m => m.MessageId!).ToHashSet();
            await ctx.WaitUntilAsync(() => ids.IsSubsetOf(byConsumer[0].Concat(byConsumer[1])), "all 200 across both consumers",
                () => $"{ids.Count(id => byConsumer[0].Contains(id) || byConsumer[1].Contains(id))} of 200");
            ctx.Report("consumer_1", byConsumer[0].Count);
            ctx.Report("consumer_2", byConsumer[1].Count);
            ctx.Report("duplicates", byConsumer[0].Count + byConsumer[1].Count - 200);
            Check(!byConsumer[0].IsEmpty && !byConsumer[1].IsEmpty, $"one consumer got nothing ({byConsumer[0].Count} / {byConsumer[1].Count})");
        }
        finally
        {
            foreach (var subscription in subscriptions)
            {
                await subscription.DisposeAsync();
            }
        }
    }

    private static async Task FanOutGroups(CaseContext ctx)
    {
        var topic = ctx.Topic("fanout");
        var groups = new[] { new ConcurrentDictionary<string, int>(), new ConcurrentDictionary<string, int>() };
        await using var first = await ctx.Bus.SubscribeAsync(topic, (m, _) => { groups[0].AddOrUpdate(m.MessageId, 1, (_, n) => n + 1); return default; }, SubscriptionOptions.ForGroup(ctx.Group("g1")));
        await using var second = await ctx.Bus.SubscribeAsync(topic, (m, _) => { groups[1].AddOrUpdate(m.MessageId, 1, (_, n) => n + 1); return default; }, SubscriptionOptions.ForGroup(ctx.Group("g2")));
        var batch = Enumerable.Range(0, 100).Select(i => Numbered($"m{i}", $"key-{i % 10}", i)).ToList();
        await ctx.Bus.PublishBatchAsync(topic, batch);
        await ctx.WaitUntilAsync(() => groups[0].Count >= 100 && groups[1].Count >= 100, "100 in each group", () => $"G1 {groups[0].Count}, G2 {groups[1].Count}");
        Check(batch.All(m => groups[0].ContainsKey(m.MessageId!) && groups[1].ContainsKey(m.MessageId!)), "a group is missing a message");
        await Task.Delay(ctx.QuietPeriod / 3); // a duplicate would come soon after
        var duplicates = groups.Sum(g => g.Values.Sum(n => n - 1));
        ctx.Report("duplicates", duplicates);
        Check(duplicates == 0, $"{duplicates} messages handled twice within a group");
    }

    private static async Task BatchPublish(CaseContext ctx)
    {
        var topic = ctx.Topic("batch");
        var handled = new List<(string Key, int Sequence)>();
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, (m, _) =>
        {
            lock (handled)
            {
                handled.Add((m.Key!, SequenceOf(m)));
            }

            return default;
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 16 });
        var batch = Enumerable.Range(0, 500).Select(i => Numbered($"m{i}", $"key-{i % 8}", i / 8)).ToList();
        await ctx.Bus.PublishBatchAsync(topic, batch);
        await ctx.WaitUntilAsync(() => { lock (handled) { return handled.Distinct().Count() >= 500; } }, "500 distinct messages", () => { lock (handled) { return $"{handled.Distinct().Count()} distinct of {handled.Count}"; } });
        lock (handled)
        {
            var duplicates = handled.Count - 500;
            ctx.Report("duplicates", duplicates);
            Check(duplicates == 0, $"{duplicates} messages handled twice by one consumer");

            // Batch publishing is not an ordering feature: a backend without per-key order (SQS standard queues) still
            // has to deliver the whole batch, so the case runs everywhere and checks the order only where it is kept.
            if (ctx.Capabilities.Supports(BusFeatures.PerKeyOrdering))
            {
                OrderingCases.CheckPerKeyOrder(handled, 8, 500);
                if (ctx.Capabilities.Remarks.TryGetValue(BusFeatures.PerKeyOrdering, out var how))
                {
                    ctx.Note($"PerKeyOrdering: {how}");
                }
            }
            else
            {
                ctx.Note("order per key not checked: " + ctx.Capabilities.ExplainMissing(BusFeatures.PerKeyOrdering));
            }
        }
    }

    private static async Task MaxInFlight(CaseContext ctx)
    {
        var topic = ctx.Topic("inflight");
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        int running = 0, peak = 0, done = 0;
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref peak, now);
            await release.Task;
            Interlocked.Decrement(ref running);
            Interlocked.Increment(ref done);
        }, new SubscriptionOptions { Group = ctx.Group(), MaxInFlight = 4 });
        await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(0, 20).Select(i => Numbered($"m{i}", $"key-{i}", i)).ToList());
        await ctx.WaitUntilAsync(() => Volatile.Read(ref running) >= 4, "4 handlers running", () => $"{running} running");
        await Task.Delay(ctx.QuietPeriod / 3); // give a fifth handler the chance to start, if the limit leaks
        release.SetResult();
        await ctx.WaitUntilAsync(() => Volatile.Read(ref done) >= 20, "all 20 handled", () => $"{done} handled");
        ctx.Report("peak_concurrency", peak);
        Check(peak <= 4, $"{peak} handlers ran at once; the limit is 4");
    }

    private static async Task GracefulShutdown(CaseContext ctx)
    {
        var topic = ctx.Topic("shutdown");
        var group = ctx.Group();
        var started = new ConcurrentDictionary<string, byte>();
        var completed = new ConcurrentDictionary<string, byte>();
        var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, _) =>
        {
            started.TryAdd(m.MessageId, 0);
            await Task.Delay(200, CancellationToken.None);
            completed.TryAdd(m.MessageId, 0);
        }, new SubscriptionOptions { Group = group, MaxInFlight = 8 });
        var batch = Enumerable.Range(0, 50).Select(i => Numbered($"m{i}", $"key-{i}", i)).ToList();
        await ctx.Bus.PublishBatchAsync(topic, batch);
        await ctx.WaitUntilAsync(() => !started.IsEmpty, "a handler to start");
        await subscription.DisposeAsync();
        var startedAtDispose = started.Keys.ToHashSet();
        var completedAtDispose = completed.Keys.ToHashSet();
        Check(startedAtDispose.SetEquals(completedAtDispose), $"dispose returned with {startedAtDispose.Count - completedAtDispose.Count} handlers still running");
        await Task.Delay(ctx.QuietPeriod / 3);
        Check(started.Count == startedAtDispose.Count, $"{started.Count - startedAtDispose.Count} messages were handled after dispose returned");

        var rest = new ConcurrentDictionary<string, int>();
        await using var next = await ctx.Bus.SubscribeAsync(topic, (m, _) => { rest.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1); return default; }, SubscriptionOptions.ForGroup(group));
        var expected = batch.Select(m => m.MessageId!).Where(id => !completedAtDispose.Contains(id)).ToHashSet();
        await ctx.WaitUntilAsync(() => expected.All(rest.ContainsKey), $"the {expected.Count} unprocessed messages", () => $"{expected.Count(rest.ContainsKey)} of {expected.Count}");
        await Task.Delay(ctx.QuietPeriod / 3);
        var redone = rest.Keys.Count(completedAtDispose.Contains);
        ctx.Report("handled_before_dispose", completedAtDispose.Count);
        ctx.Report("redelivered_after_ack", redone);
        Check(redone == 0, $"{redone} messages handled and acked before dispose were delivered again");
    }

    private static async Task PublishesThenDispose(CaseContext ctx)
    {
        var topic = ctx.Topic("dispose-publishing");
        var received = new ConcurrentDictionary<string, int>();
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, (m, _) =>
        {
            received.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1);
            return default;
        }, SubscriptionOptions.ForGroup(ctx.Group()));

        // A second bus, connected, disposed while its publishes are still on their way: an application shutting down.
        var publisher = ctx.CreateBus();
        var sent = Enumerable.Range(0, 200).Select(i => Numbered($"m{i}", $"key-{i % 8}", i)).ToList();
        List<Task> pending = [];
        var inFlightAtDispose = 0;
        try
        {
            await publisher.EnsureTopicAsync(topic);
            pending = [.. sent.Select(m => publisher.PublishAsync(topic, m).AsTask())];
        }
        finally
        {
            inFlightAtDispose = pending.Count(t => !t.IsCompleted);
            ctx.Report("in_flight_at_dispose", inFlightAtDispose);
            await publisher.DisposeAsync();
        }

        if (inFlightAtDispose == 0)
        {
            // Not a failure (a backend that confirms at once has nothing under way), but not what the case is about.
            ctx.Note("every publish had completed before dispose (this backend confirms them at once): disposing with publishes under way was not exercised");
        }

        var inFlightAfterDispose = pending.Count(t => !t.IsCompleted);
        ctx.Report("in_flight_after_dispose", inFlightAfterDispose);
        var all = Task.WhenAll(pending);
        await Task.WhenAny(all, Task.Delay(ctx.WaitTimeout));
        var confirmed = sent.Where((_, i) => pending[i].IsCompletedSuccessfully).Select(m => m.MessageId!).ToHashSet();
        var failures = pending.Where(t => t.IsFaulted).Select(t => t.Exception!.InnerException!).ToList();
        ctx.Report("confirmed", confirmed.Count);
        ctx.Report("failed", failures.Count);
        Check(pending.All(t => t.IsCompleted), $"{pending.Count(t => !t.IsCompleted)} publishes had neither completed nor failed {ctx.WaitTimeout.TotalSeconds:0} s after the bus was disposed");
        Check(failures.Count == 0, $"{failures.Count} publishes failed instead of completing; the first: {failures.FirstOrDefault()?.GetType().Name}: {failures.FirstOrDefault()?.Message}");
        Check(inFlightAfterDispose == 0, $"disposing returned while {inFlightAfterDispose} publishes were still under way");
        await ctx.WaitUntilAsync(() => confirmed.All(received.ContainsKey), $"the {confirmed.Count} confirmed messages",
            () => $"{confirmed.Count(received.ContainsKey)} of {confirmed.Count}");
    }

    private static async Task Delayed(CaseContext ctx)
    {
        var topic = ctx.Topic("delayed");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        var published = System.Diagnostics.Stopwatch.StartNew();
        await ctx.Bus.PublishAsync(topic, new OutgoingMessage("later"u8.ToArray()) { Delay = TimeSpan.FromSeconds(2) });
        var message = await ctx.ReceiveAsync(consumer, "the delayed message");
        var after = published.Elapsed;
        await message.AckAsync();
        ctx.Report("delivered_after_ms", (long)after.TotalMilliseconds);
        Check(after >= TimeSpan.FromMilliseconds(1950), $"delivered after {after.TotalMilliseconds:0} ms, before the 2 s delay");
    }

    private static async Task RequestReply(CaseContext ctx)
    {
        var topic = ctx.Topic("rpc");
        await using var responder = await ctx.Bus.SubscribeAsync(topic, async (m, token) =>
            await ctx.Bus.ReplyAsync(m, OutgoingMessage.FromText("re:" + m.GetText()), token), SubscriptionOptions.ForGroup(ctx.Group()));
        var request = OutgoingMessage.FromText("ping");
        request.CorrelationId = "corr-" + Guid.NewGuid().ToString("N");
        var reply = await ctx.Bus.RequestAsync(topic, request, ctx.WaitTimeout);
        CheckEqual(request.CorrelationId, reply.CorrelationId, "reply correlation id");
        CheckEqual("re:ping", reply.GetText(), "reply body");
    }

    internal static void InterlockedMax(ref int target, int value)
    {
        int current;
        while (value > (current = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
