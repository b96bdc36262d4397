using System.Collections.Concurrent;
using Xunit;

namespace Bus.Tests;

/// <summary>Behaviour of core and the in-memory backend beyond the conformance catalogue.</summary>
public class MemoryBackendTests
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);

    private static async Task<ReceivedMessage> ReceiveAsync(MessageConsumer consumer)
    {
        using var timeout = new CancellationTokenSource(Wait);
        return await consumer.ReceiveAsync(timeout.Token);
    }

    [Fact]
    public async Task The_first_settlement_wins_and_later_ones_do_nothing()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync("t", SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync("t", "x");
        var message = await ReceiveAsync(consumer);
        await message.AckAsync();
        await message.NackAsync();
        await message.DeadLetterAsync("too late");
        Assert.Equal(SettlementState.Acked, message.Settlement);
        Assert.Equal(0, consumer.InFlight);
        using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await consumer.ReceiveAsync(quiet.Token));
    }

    [Fact]
    public async Task Consumers_whose_waits_were_cancelled_are_still_woken_and_share_the_group_without_loss()
    {
        // Memory consumers pull, and sleep when the group is empty: a cancelled sleep leaves the consumer in the group's
        // queue of sleepers, and every later wake-up must still reach a consumer that sleeps again.
        await using var bus = MessageBus.Create("memory://");
        var options = new SubscriptionOptions { Group = "g", MaxInFlight = 4, PerKeyOrdering = false };
        await using var first = await bus.CreateConsumerAsync("t", options);
        await using var second = await bus.CreateConsumerAsync("t", options);
        foreach (var consumer in new[] { first, second })
        {
            for (var i = 0; i < 20; i++)
            {
                using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
                await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await consumer.ReceiveAsync(soon.Token));
            }
        }

        const int Count = 2_000;
        var received = new ConcurrentDictionary<string, int>();
        var perConsumer = new int[2];
        using var done = new CancellationTokenSource(Wait);
        var readers = new[] { first, second }.Select((consumer, index) => Task.Run(async () =>
        {
            while (received.Count < Count)
            {
                ReceivedMessage message;
                try
                {
                    using var slice = CancellationTokenSource.CreateLinkedTokenSource(done.Token);
                    slice.CancelAfter(TimeSpan.FromMilliseconds(Random.Shared.Next(1, 20)));
                    message = await consumer.ReceiveAsync(slice.Token);
                }
                catch (OperationCanceledException) when (!done.IsCancellationRequested)
                {
                    continue; // a cancelled wait, as above, in the middle of the traffic
                }

                received.AddOrUpdate(message.MessageId, 1, (_, n) => n + 1);
                Interlocked.Increment(ref perConsumer[index]);
                await message.AckAsync();
            }
        })).ToArray();

        for (var i = 0; i < Count; i++)
        {
            await bus.PublishAsync("t", new OutgoingMessage(new byte[] { 1 }) { MessageId = $"m{i}" });
            if (i % 100 == 0)
            {
                await Task.Delay(1); // let the consumers catch up and go to sleep now and then
            }
        }

        await Task.WhenAll(readers).WaitAsync(Wait);
        Assert.Equal(Count, received.Count);
        Assert.All(received.Values, deliveries => Assert.Equal(1, deliveries));
        Assert.All(perConsumer, n => Assert.True(n > 0, $"each consumer took part: {perConsumer[0]} and {perConsumer[1]}"));
    }

    [Fact]
    public async Task Competing_consumers_are_handed_equal_shares_before_either_reads()
    {
        // A consumer takes its own batches only when it is alone in its group: otherwise the first to read, or the
        // first a thread is free for, would take everything that waits (up to its max in-flight).
        await using var bus = MessageBus.Create("memory://");
        var options = new SubscriptionOptions { Group = "g", MaxInFlight = 64, PerKeyOrdering = false };
        await using var first = await bus.CreateConsumerAsync("t", options);
        await using var second = await bus.CreateConsumerAsync("t", options);
        await bus.PublishBatchAsync("t", Enumerable.Range(0, 40).Select(i => new OutgoingMessage(new byte[] { 1 }) { MessageId = $"m{i}" }).ToList());

        var ids = new List<string>();
        var perConsumer = new List<int>();
        foreach (var consumer in new[] { first, second })
        {
            var count = 0;
            while (consumer.TryReceive(out var message))
            {
                ids.Add(message.MessageId);
                count++;
            }

            perConsumer.Add(count);
        }

        Assert.Equal([20, 20], perConsumer);
        Assert.Equal(40, ids.Distinct().Count());
    }

    [Fact]
    public async Task A_consumer_that_slept_and_closed_leaves_the_group_entirely()
    {
        // A cancelled sleep leaves the consumer in the group's queue of sleepers; closing must take it out, or on a
        // quiet topic every such consumer (slots, buffer) stayed reachable until the next publish (a review measured
        // 317 MiB after 2,000 of them with a max in-flight of 4,096).
        using var broker = Bus.Memory.MemoryBroker.Get("", retention: 100);
        var topic = broker.Topic("t");
        var options = new SubscriptionOptions { Group = "g", MaxInFlight = 8, PerKeyOrdering = false };
        var staying = topic.Join(options);
        for (var i = 0; i < 20; i++)
        {
            var leaving = topic.Join(options);
            using var soon = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
            await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await leaving.Deliveries.WaitToReadAsync(soon.Token));
            await leaving.DisposeAsync();
        }

        lock (topic.Sync)
        {
            Assert.Equal(0, staying.Group.SleepersQueued);
        }

        topic.Publish(new OutgoingMessage(new byte[] { 1 }) { MessageId = "after" });
        Assert.True(staying.Deliveries.TryRead(out var message));
        Assert.Equal("after", message.MessageId);
        await staying.DisposeAsync();
    }

    [Fact]
    public async Task The_memory_receiver_ignores_a_settlement_with_a_tag_it_did_not_hand_out()
    {
        using var broker = Bus.Memory.MemoryBroker.Get("", retention: 100);
        var topic = broker.Topic("t");
        var receiver = topic.Join(new SubscriptionOptions { Group = "g", MaxInFlight = 2, PerKeyOrdering = false });
        static ReceivedMessage Foreign(long tag) => new("t", new byte[] { 1 }, null, null, "foreign", null, null, null, 1, "0", DateTimeOffset.UtcNow, tag);

        // Tag 0 (an unset tag) once freed a free slot and left the count short: the next fill then spun under the lock.
        await receiver.AckAsync(Foreign(0), CancellationToken.None);
        await receiver.NackAsync(Foreign(0), TimeSpan.Zero, CancellationToken.None);
        await receiver.AckAsync(Foreign(5), CancellationToken.None); // a slot this consumer does not have
        Assert.Equal(2, receiver.Credit);

        foreach (var id in new[] { "a", "b", "c" })
        {
            topic.Publish(new OutgoingMessage(new byte[] { 2 }) { MessageId = id });
        }

        Assert.True(receiver.Deliveries.TryRead(out var first));
        Assert.True(receiver.Deliveries.TryRead(out var second));
        Assert.False(receiver.Deliveries.TryRead(out _)); // its credit is two
        await receiver.AckAsync(first, CancellationToken.None);
        Assert.True(receiver.Deliveries.TryRead(out var third));
        Assert.Equal(["a", "b", "c"], new[] { first.MessageId, second.MessageId, third.MessageId });
        await receiver.DisposeAsync();
    }

    [Fact]
    public async Task Bodies_stored_side_by_side_come_back_byte_exact_across_buffer_boundaries()
    {
        // memory:// copies bodies into shared buffers (4 KiB growing to 64 KiB; over 8 KiB an array of its own): sizes
        // around every boundary, enough messages to fill several buffers, each body distinct. The first body is larger
        // than the first buffer (that once threw).
        await using var bus = MessageBus.Create("memory://?retention=10");
        await using var consumer = await bus.CreateConsumerAsync("bodies", new SubscriptionOptions { Group = "g", MaxInFlight = 4096, PerKeyOrdering = false });
        var random = new Random(7);
        int[] edges = [5000, 0, 1, 2, 255, 4095, 4096, 4097, 8191, 8192, 8193, 65535, 65536, 65537];
        var sizes = edges.Concat(Enumerable.Range(0, 1500).Select(_ => random.Next(0, 9000))).ToArray();
        var sent = new List<byte[]>();
        foreach (var size in sizes)
        {
            var body = new byte[size];
            random.NextBytes(body);
            sent.Add(body.ToArray());
            var message = new OutgoingMessage(body);
            await bus.PublishAsync("bodies", message);
            body.AsSpan().Clear(); // the publisher reuses its buffer: what was stored must not change
        }

        for (var i = 0; i < sizes.Length; i++)
        {
            var received = await ReceiveAsync(consumer);
            Assert.Equal(sizes[i], received.Body.Length);
            Assert.True(sent[i].AsSpan().SequenceEqual(received.Body.Span), $"body {i} ({sizes[i]} bytes) differs");
            Assert.Equal(i.ToString(System.Globalization.CultureInfo.InvariantCulture), received.Position);
            await received.AckAsync();
        }
    }

    [Fact]
    public async Task An_assigned_id_is_the_same_text_for_the_publisher_and_every_delivery()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var first = await bus.CreateConsumerAsync("ids", SubscriptionOptions.ForGroup("a"));
        await using var second = await bus.CreateConsumerAsync("ids", SubscriptionOptions.ForGroup("b"));
        var unread = new OutgoingMessage(new byte[] { 1 });
        var read = new OutgoingMessage(new byte[] { 2 });
        Assert.Null(unread.MessageId);
        await bus.PublishAsync("ids", unread);
        Assert.Null(unread.MessageIdText); // publishing (validation and size checks included) did not format it
        Assert.NotEqual(UInt128.Zero, unread.AssignedId);
        await bus.PublishAsync("ids", read);
        var readId = read.MessageId; // read before delivery: the store keeps the text itself
        Assert.Same(readId, read.MessageId);

        foreach (var consumer in new[] { first, second })
        {
            var one = await ReceiveAsync(consumer);
            var two = await ReceiveAsync(consumer);
            Assert.Equal(unread.MessageId, one.MessageId);
            Assert.Same(one.MessageId, one.MessageId);
            Assert.Equal(readId, two.MessageId);
            Assert.Equal(7, Guid.ParseExact(one.MessageId, "N").Version);
            Assert.True(string.CompareOrdinal(one.MessageId, two.MessageId) < 0, "assigned ids sort in publish order");
        }

        // Publishing the same message again keeps its id (as when the id was written back as text).
        var id = unread.MessageId;
        await bus.PublishAsync("ids", unread);
        Assert.Equal(id, (await ReceiveAsync(first)).MessageId);
    }

    [Fact]
    public async Task A_handler_that_fails_twice_is_retried_in_place_with_counted_deliveries()
    {
        await using var bus = MessageBus.Create("memory://");
        var counts = new ConcurrentQueue<int>();
        await using var subscription = await bus.SubscribeAsync("t", (m, _) =>
        {
            counts.Enqueue(m.DeliveryCount);
            return counts.Count < 3 ? throw new TimeoutException("flaky") : default;
        }, new SubscriptionOptions { Group = "g", RetryDelay = TimeSpan.FromMilliseconds(1), MaxRetryDelay = TimeSpan.FromMilliseconds(5) });
        await bus.PublishAsync("t", "x");
        await WaitForAsync(() => counts.Count >= 3);
        await Task.Delay(200);
        Assert.Equal([1, 2, 3], counts.ToArray());
        await using var deadLetters = await bus.CreateConsumerAsync(bus.GetDeadLetterTopic("t"), SubscriptionOptions.ForGroup(BusDefaults.DeadLetterGroup));
        Assert.False(deadLetters.TryReceive(out _));
    }

    [Fact]
    public async Task An_unacked_message_comes_back_after_the_ack_timeout()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync("t", new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromMilliseconds(200) });
        await bus.PublishAsync("t", "x");
        var first = await ReceiveAsync(consumer);
        var again = await ReceiveAsync(consumer);
        Assert.Equal(first.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
    }

    [Fact]
    public async Task A_nack_with_a_delay_is_not_redelivered_before_the_delay()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync("t", SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync("t", "x");
        var first = await ReceiveAsync(consumer);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await first.NackAsync(TimeSpan.FromMilliseconds(300));
        var again = await ReceiveAsync(consumer);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(300), $"redelivered after {watch.ElapsedMilliseconds} ms");
        Assert.Equal(2, again.DeliveryCount);
    }

    [Fact]
    public async Task Named_memory_brokers_are_shared_by_buses_in_one_process()
    {
        await using var producer = MessageBus.Create("memory://shared-by-name");
        await using var consumerBus = MessageBus.Create("memory://shared-by-name");
        await using var consumer = await consumerBus.CreateConsumerAsync("t", SubscriptionOptions.ForGroup("g"));
        await producer.PublishAsync("t", "across buses");
        Assert.Equal("across buses", (await ReceiveAsync(consumer)).GetText());
    }

    [Fact]
    public async Task Retention_bounds_what_a_new_group_can_replay()
    {
        await using var bus = MessageBus.Create("memory://?retention=10");
        await bus.PublishBatchAsync("t", Enumerable.Range(0, 30).Select(i => OutgoingMessage.FromText(i.ToString(System.Globalization.CultureInfo.InvariantCulture))).ToList());
        await using var consumer = await bus.CreateConsumerAsync("t", new SubscriptionOptions { Group = "late", StartPosition = StartPosition.Earliest, MaxInFlight = 100 });
        var replayed = new List<int>();
        while (consumer.TryReceive(out var message))
        {
            replayed.Add(int.Parse(message.GetText(), System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.InRange(replayed.Count, 10, 13);
        Assert.Equal(29, replayed[^1]);
        Assert.Equal(Enumerable.Range(30 - replayed.Count, replayed.Count), replayed);
    }

    [Fact]
    public async Task Dispose_of_the_bus_stops_subscriptions_and_later_calls_fail_clearly()
    {
        var bus = MessageBus.Create("memory://");
        var subscription = await bus.SubscribeAsync("t", (_, _) => default, SubscriptionOptions.ForGroup("g"));
        await bus.DisposeAsync();
        await subscription.Completion.WaitAsync(Wait);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await bus.PublishAsync("t", "x"));
    }

    [Fact]
    public async Task Publishing_is_counted_in_the_Bus_meter()
    {
        using var published = new MetricCounter("bus.messages.published", "metered");
        await using var bus = MessageBus.Create("memory://");
        await bus.PublishAsync("metered", "x");
        await bus.PublishBatchAsync("metered", [OutgoingMessage.FromText("y"), OutgoingMessage.FromText("z")]);
        Assert.Equal(3, published.Total);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public async Task Per_key_order_holds_with_random_handler_latency(int seed)
    {
        var random = new Random(seed);
        await using var bus = MessageBus.Create("memory://");
        var handled = new ConcurrentDictionary<string, ConcurrentQueue<int>>();
        var total = 0;
        await using var subscription = await bus.SubscribeAsync("t", async (m, _) =>
        {
            int delay;
            lock (random)
            {
                delay = random.Next(0, 3);
            }

            if (delay > 0)
            {
                await Task.Delay(delay);
            }

            handled.GetOrAdd(m.Key!, _ => new()).Enqueue(int.Parse(m.GetText(), System.Globalization.CultureInfo.InvariantCulture));
            Interlocked.Increment(ref total);
        }, new SubscriptionOptions { Group = "g", MaxInFlight = 32 });
        var keys = Enumerable.Range(0, 12).Select(k => $"k{k}").ToArray();
        var next = keys.ToDictionary(k => k, _ => 0);
        var batch = new List<OutgoingMessage>();
        for (var i = 0; i < 600; i++)
        {
            var key = keys[random.Next(keys.Length)];
            batch.Add(OutgoingMessage.FromText((next[key]++).ToString(System.Globalization.CultureInfo.InvariantCulture), key));
        }

        await bus.PublishBatchAsync("t", batch);
        await WaitForAsync(() => Volatile.Read(ref total) >= 600);
        foreach (var (key, sequence) in handled)
        {
            Assert.Equal(Enumerable.Range(0, next[key]), sequence);
        }
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!condition())
        {
            Assert.True(watch.Elapsed < Wait, "timed out");
            await Task.Delay(5);
        }
    }

    [Fact]
    public async Task DeleteTopicAsync_removes_the_topic_and_its_dead_letter_topic_from_a_shared_broker()
    {
        var name = "delete-" + Guid.NewGuid().ToString("N")[..8];
        await using var bus = MessageBus.Create($"memory://{name}");
        await using (await bus.CreateConsumerAsync("orders", SubscriptionOptions.ForGroup("g1")))
        {
        }

        await bus.PublishAsync("orders", OutgoingMessage.FromText("lost with the topic"));
        var broker = Bus.Memory.MemoryBroker.Get(name, retention: 100);
        Assert.True(broker.HasTopic("orders"));
        Assert.True(broker.HasTopic("orders.dlq"));

        await bus.DeleteTopicAsync("orders", ["g1"]);

        Assert.False(broker.HasTopic("orders"));
        Assert.False(broker.HasTopic("orders.dlq"));

        // Used again: ensured anew, and a new group from the earliest finds nothing of the old topic.
        await using var consumer = await bus.CreateConsumerAsync("orders", new SubscriptionOptions { Group = "g2", StartPosition = StartPosition.Earliest });
        Assert.True(broker.HasTopic("orders.dlq"));
        Assert.False(consumer.TryReceive(out _));
    }

    [Fact]
    public async Task Disposing_a_bus_deletes_its_private_reply_topic_from_a_shared_broker()
    {
        var name = "reply-cleanup-" + Guid.NewGuid().ToString("N")[..8];
        await using var other = MessageBus.Create($"memory://{name}"); // keeps the named broker in use
        var bus = MessageBus.Create($"memory://{name}");
        await using var responder = await other.SubscribeAsync("rpc", async (m, token) => await other.ReplyAsync(m, OutgoingMessage.FromText("re"), token), SubscriptionOptions.ForGroup("responders"));
        var request = OutgoingMessage.FromText("ping");
        var reply = await bus.RequestAsync("rpc", request, Wait);
        Assert.Equal("re", reply.GetText());
        var replyTopic = request.ReplyTo!;
        var broker = Bus.Memory.MemoryBroker.Get(name, retention: 100);
        Assert.True(broker.HasTopic(replyTopic));
        Assert.True(broker.HasTopic(replyTopic + ".dlq"));

        await bus.DisposeAsync();

        Assert.False(broker.HasTopic(replyTopic));
        Assert.False(broker.HasTopic(replyTopic + ".dlq"));
        Assert.True(broker.HasTopic("rpc"));
    }
}
