using System.Collections.Concurrent;
using System.Text;
using Bus.Tests.Shared;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;
using Xunit;

namespace Bus.RabbitMq.Tests;

/// <summary>
/// Behaviour specific to RabbitMQ, against a broker of its own (one test restarts it): queue types, single active
/// consumer, the broker's own dead-lettering, interoperability with the raw client, recovery after a restart.
/// </summary>
public sealed class RabbitMqIntegrationTests(RabbitMqIntegrationFixture fixture) : IClassFixture<RabbitMqIntegrationFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);

    private static string Unique(string hint) => $"it-{hint}-{Guid.NewGuid():N}"[..24];

    private MessageBus CreateBus(string query = "")
    {
        var url = fixture.Backend.Url.TrimEnd('/') + query;
        return MessageBus.Create(new BusOptions { Url = url, ConnectTimeout = TimeSpan.FromSeconds(10) });
    }

    private async Task<IConnection> RawConnectionAsync()
        => await new ConnectionFactory { Uri = fixture.ConnectionUri }.CreateConnectionAsync();

    private static async Task<ReceivedMessage> ReceiveAsync(MessageConsumer consumer)
    {
        using var timeout = new CancellationTokenSource(Wait);
        return await consumer.ReceiveAsync(timeout.Token);
    }

    [Fact]
    public async Task Raw_client_publish_is_read_through_bus()
    {
        await using var bus = CreateBus();
        var topic = Unique("raw-in");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));

        await using var connection = await RawConnectionAsync();
        await using var channel = await connection.CreateChannelAsync(new CreateChannelOptions(true, true));
        var properties = new BasicProperties
        {
            MessageId = "raw-1",
            CorrelationId = "corr-ü",
            ContentType = "text/plain",
            Persistent = true,
            Headers = new Dictionary<string, object?> { ["bus-key"] = Encoding.UTF8.GetBytes("k-ü"), ["h"] = Encoding.UTF8.GetBytes("ünïcødé ✓"), ["n"] = 42 },
        };
        await channel.BasicPublishAsync(topic, "", false, properties, Encoding.UTF8.GetBytes("from the raw client"));

        var message = await ReceiveAsync(consumer);
        Assert.Equal("from the raw client", message.GetText());
        Assert.Equal("raw-1", message.MessageId);
        Assert.Equal("corr-ü", message.CorrelationId);
        Assert.Equal("text/plain", message.ContentType);
        Assert.Equal("k-ü", message.Key);
        Assert.Equal(["h", "n"], message.Headers.Keys.Order(StringComparer.Ordinal));
        Assert.Equal("ünïcødé ✓", message.Headers["h"]);
        Assert.Equal("42", message.Headers["n"]);
        Assert.False(message.Headers.ContainsKey("bus-key"));
        Assert.Equal(1, message.DeliveryCount);
        await message.AckAsync();
    }

    /// <summary>
    /// A queue that refuses what it has no room for (x-max-length with x-overflow=reject-publish) makes the broker nack
    /// those publishes: a batch of 10 into room for 5 fails, and its exception lists exactly the 5 nacked, in order,
    /// while the 5 confirmed are the ones in the queue.
    /// </summary>
    [Fact]
    public async Task A_batch_the_broker_partly_nacks_lists_the_nacked_messages()
    {
        await using var bus = CreateBus();
        var topic = Unique("nacked");
        await bus.EnsureTopicAsync(topic);
        await using var connection = await RawConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var queue = $"{topic}:limited";
        await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, new Dictionary<string, object?> { ["x-max-length"] = 5, ["x-overflow"] = "reject-publish" });
        await channel.QueueBindAsync(queue, topic, "");
        try
        {
            var messages = Enumerable.Range(0, 10).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();

            var error = await Assert.ThrowsAsync<PublishBatchException>(async () => await bus.PublishBatchAsync(topic, messages));

            Assert.Equal(BusFailureReason.PublishNotConfirmed, error.Reason);
            Assert.Equal(messages.Skip(5), error.UnconfirmedMessages);
            var stored = new List<string>();
            while (await channel.BasicGetAsync(queue, autoAck: true) is { } result)
            {
                stored.Add(result.BasicProperties.MessageId!);
            }

            Assert.Equal(messages.Take(5).Select(m => m.MessageId), stored);
        }
        finally
        {
            await channel.QueueDeleteAsync(queue);
        }
    }

    [Fact]
    public async Task Bus_publish_is_read_by_the_raw_client()
    {
        await using var bus = CreateBus();
        var topic = Unique("raw-out");
        await bus.EnsureTopicAsync(topic);
        await using var connection = await RawConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var queue = (await channel.QueueDeclareAsync("", durable: false, exclusive: true, autoDelete: true)).QueueName;
        await channel.QueueBindAsync(queue, topic, "");

        var outgoing = OutgoingMessage.FromText("to the raw client", "key-1");
        outgoing.Headers["h-utf8"] = "ünïcødé ✓";
        outgoing.CorrelationId = "c-1";
        await bus.PublishAsync(topic, outgoing);

        BasicGetResult? result = null;
        for (var i = 0; i < 200 && result is null; i++)
        {
            result = await channel.BasicGetAsync(queue, autoAck: true);
            if (result is null)
            {
                await Task.Delay(25);
            }
        }

        Assert.NotNull(result);
        Assert.Equal("to the raw client", Encoding.UTF8.GetString(result.Body.Span));
        Assert.Equal(topic, result.Exchange);
        Assert.Equal("key-1", result.RoutingKey);
        Assert.Equal(outgoing.MessageId, result.BasicProperties.MessageId);
        Assert.Equal("c-1", result.BasicProperties.CorrelationId);
        Assert.True(result.BasicProperties.Persistent);
        Assert.Equal("key-1", Encoding.UTF8.GetString((byte[])result.BasicProperties.Headers!["bus-key"]!));
        Assert.Equal("ünïcødé ✓", Encoding.UTF8.GetString((byte[])result.BasicProperties.Headers!["h-utf8"]!));
    }

    [Theory]
    [InlineData("", "quorum", new[] { 1, 2, 3 })]
    [InlineData("?queue-type=classic", "classic", new[] { 1, 2, 3 })]
    public async Task Queue_type_from_the_uri(string query, string queueType, int[] counts)
    {
        await using var bus = CreateBus(query);
        var topic = Unique("qtype");
        await using (var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g")))
        {
            await bus.PublishAsync(topic, "again");
            var seen = new List<int>();
            for (var i = 0; i < 3; i++)
            {
                var message = await ReceiveAsync(consumer);
                seen.Add(message.DeliveryCount);
                await (i < 2 ? message.NackAsync() : message.AckAsync());
            }

            // Quorum queues count deliveries; classic queues only flag a redelivery, so the adapter counts redeliveries
            // within the bus (until it did, a classic queue counted 1, 2, 2), and the bus declares no shared count.
            Assert.Equal(counts, seen);
            const BusFeatures countBased = BusFeatures.ExactDeliveryCount | BusFeatures.SharedDeliveryCount | BusFeatures.NativeDeadLetter;
            Assert.Equal(queueType == "quorum", bus.Capabilities.Supports(countBased));
            Assert.Equal(queueType == "classic", bus.Capabilities.ExplainMissing(BusFeatures.SharedDeliveryCount)?.Contains("queue-type=classic", StringComparison.Ordinal) ?? false);
        }

        // The broker compares x-queue-type on redeclaration: the other type is refused.
        await using var connection = await RawConnectionAsync();
        var other = queueType == "quorum" ? "classic" : "quorum";
        await using var channel = await connection.CreateChannelAsync();
        var error = await Assert.ThrowsAsync<OperationInterruptedException>(() => channel.QueueDeclareAsync($"{topic}:g", true, false, false, new Dictionary<string, object?> { ["x-queue-type"] = other }));
        Assert.Equal(406, error.ShutdownReason!.ReplyCode);
        Assert.Contains("inequivalent arg", error.ShutdownReason.ReplyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Ordered_topic_keeps_per_key_order_across_consumers_with_single_active_consumer()
    {
        await using var bus = CreateBus();
        var topic = Unique("sac");
        await bus.EnsureTopicAsync(topic, new TopicOptions { Ordered = true });
        var handled = new List<(string Key, int Sequence)>();
        var perConsumer = new int[2];
        var subscriptions = new List<ISubscription>();
        for (var i = 0; i < 2; i++)
        {
            var index = i;
            subscriptions.Add(await bus.SubscribeAsync(topic, async (m, _) =>
            {
                lock (handled)
                {
                    handled.Add((m.Key!, int.Parse(m.Headers["seq"], System.Globalization.CultureInfo.InvariantCulture)));
                }

                Interlocked.Increment(ref perConsumer[index]);
                await Task.Yield();
            }, new SubscriptionOptions { Group = "g", MaxInFlight = 16 }));
        }

        var batch = Enumerable.Range(0, 800).Select(i =>
        {
            var message = OutgoingMessage.FromText($"m{i}", $"key-{i % 8}");
            message.Headers["seq"] = (i / 8).ToString(System.Globalization.CultureInfo.InvariantCulture);
            return message;
        }).ToList();
        await bus.PublishBatchAsync(topic, batch);
        var deadline = DateTime.UtcNow + Wait;
        while (DateTime.UtcNow < deadline && Volatile.Read(ref perConsumer[0]) + Volatile.Read(ref perConsumer[1]) < 800)
        {
            await Task.Delay(20);
        }

        foreach (var subscription in subscriptions)
        {
            await subscription.DisposeAsync();
        }

        lock (handled)
        {
            Assert.Equal(800, handled.Count);
            foreach (var group in handled.GroupBy(h => h.Key))
            {
                Assert.Equal(Enumerable.Range(0, 100), group.Select(h => h.Sequence));
            }
        }

        // Single active consumer: one consumer received everything, the other stood by.
        Assert.Contains(0, perConsumer);
    }

    [Fact]
    public async Task Broker_dead_letters_at_its_delivery_limit_when_consumers_keep_failing()
    {
        await using var bus = CreateBus();
        var topic = Unique("native-dlq");
        await bus.EnsureTopicAsync(topic);
        // MaxDeliveries 1: the queue is declared with x-delivery-limit 3.
        await (await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxDeliveries = 1 })).DisposeAsync();
        await bus.PublishAsync(topic, OutgoingMessage.FromText("crashes every consumer", "k"));

        // A raw consumer that never settles and keeps "crashing" (returning the message), outside core's reach.
        await using var connection = await RawConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var returns = 0;
        // Until a deadline, not for a number of tries: ten tries 50 ms apart gave a broker starved of CPU about 300 ms
        // to requeue the message three times.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (DateTime.UtcNow < deadline)
        {
            var result = await channel.BasicGetAsync($"{topic}:g", autoAck: false);
            if (result is null)
            {
                if (returns >= 4)
                {
                    break;
                }

                await Task.Delay(50);
                continue;
            }

            await channel.BasicNackAsync(result.DeliveryTag, false, requeue: true);
            returns++;
        }

        Assert.Equal(4, returns); // delivered 4 times: the limit (3) lets it come back 3 times

        await using var deadLetters = await bus.CreateConsumerAsync(bus.GetDeadLetterTopic(topic), new SubscriptionOptions { Group = BusDefaults.DeadLetterGroup, PerKeyOrdering = false });
        var copy = await ReceiveAsync(deadLetters);
        Assert.Equal("crashes every consumer", copy.GetText());
        Assert.Equal("k", copy.Key);
        Assert.Equal("dead-lettered by RabbitMQ: delivery_limit", copy.Headers[DeadLetterHeaders.Reason]);
        Assert.Equal(topic, copy.Headers[DeadLetterHeaders.OriginalTopic]);
        Assert.Equal("g", copy.Headers[DeadLetterHeaders.Group]);
        await copy.AckAsync();
    }

    [Fact]
    public async Task Delayed_nack_holds_the_message_and_its_key()
    {
        await using var bus = CreateBus();
        var topic = Unique("dnack");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 8 });
        await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("first", "k"), OutgoingMessage.FromText("second", "k")]);
        var first = await ReceiveAsync(consumer);
        Assert.Equal("first", first.GetText());
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await first.NackAsync(TimeSpan.FromSeconds(1));

        // Nothing of key k overtakes the nacked message, and it is not back before its delay.
        var again = await ReceiveAsync(consumer);
        Assert.Equal("first", again.GetText());
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(950), $"redelivered after {watch.Elapsed.TotalMilliseconds:0} ms");
        Assert.Equal(2, again.DeliveryCount);
        await again.AckAsync();
        var second = await ReceiveAsync(consumer);
        Assert.Equal("second", second.GetText());
        await second.AckAsync();
    }

    [Fact]
    public async Task Conflicting_topic_options_are_reported()
    {
        await using var bus = CreateBus();
        var topic = Unique("conflict");
        var classic = new TopicOptions();
        classic.Properties["queue-type"] = "classic";
        await bus.EnsureTopicAsync(topic, classic);
        await bus.EnsureTopicAsync(topic, classic);
        await bus.EnsureTopicAsync(topic);
        var quorum = new TopicOptions { Ordered = true };
        quorum.Properties["queue-type"] = "quorum";
        var error = await Assert.ThrowsAnyAsync<BusException>(() => bus.EnsureTopicAsync(topic, quorum).AsTask());
        Assert.Equal(BusFailureReason.TopicConflict, error.Reason);
        Assert.Contains(topic, error.Message, StringComparison.Ordinal);
        Assert.Contains("queue-type", error.Message, StringComparison.Ordinal);

        // The failed ensure recorded nothing: the topic is not "ordered" now.
        await bus.EnsureTopicAsync(topic, new TopicOptions { Ordered = false });

        // The classic topic's groups are classic queues (the broker refuses to redeclare one as quorum), whose
        // redeliveries the adapter counts itself: the broker only flags them.
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync(topic, "x");
        var message = await ReceiveAsync(consumer);
        await message.NackAsync();
        message = await ReceiveAsync(consumer);
        await message.NackAsync();
        message = await ReceiveAsync(consumer);
        Assert.Equal(3, message.DeliveryCount);
        await message.AckAsync();

        await using var connection = await RawConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        var refused = await Assert.ThrowsAsync<OperationInterruptedException>(() => channel.QueueDeclareAsync($"{topic}:g", true, false, false, new Dictionary<string, object?> { ["x-queue-type"] = "quorum" }));
        Assert.Contains("inequivalent arg 'x-queue-type'", refused.ShutdownReason!.ReplyText, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Wrong_password_is_unauthorized_and_not_echoed()
    {
        const string Password = "Wr0ng-s3cret-zz";
        var url = new UriBuilder(fixture.ConnectionUri) { Password = Password }.Uri.ToString();
        await using var bus = MessageBus.Create(new BusOptions { Url = url, ConnectTimeout = TimeSpan.FromSeconds(5) });
        var error = await Assert.ThrowsAnyAsync<BusException>(() => bus.PublishAsync(Unique("auth"), "x").AsTask());
        Assert.DoesNotContain(Password, error.ToString(), StringComparison.Ordinal);
        Assert.Contains("rabbitmq", error.Message, StringComparison.Ordinal);
        Assert.Equal(BusFailureReason.Unauthorized, error.Reason); // core once reported every connect failure as Connection
        Assert.False(error.IsTransient);
    }

    [Fact]
    public async Task Confirmed_messages_survive_a_broker_restart_and_the_bus_recovers()
    {
        // An endpoint run by someone else (BUS_TEST_RABBITMQ_URL) cannot be restarted by the test.
        Assert.True(fixture.Broker.CanControlLifecycle, $"{fixture.Broker} cannot be restarted by the tests");

        await using var bus = CreateBus();
        var topic = Unique("restart");
        var seen = new ConcurrentDictionary<string, byte>();

        // A consumer that lives through the restart, and a group with a backlog that nobody consumes meanwhile.
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "live", MaxInFlight = 8 });
        await (await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("backlog"))).DisposeAsync();
        var before = Enumerable.Range(0, 100).Select(i => OutgoingMessage.FromText($"before {i}")).ToList();
        await bus.PublishBatchAsync(topic, before);
        for (var i = 0; i < 10; i++)
        {
            var message = await ReceiveAsync(consumer);
            seen.TryAdd(message.MessageId, 0);
            await message.AckAsync();
        }

        await fixture.Broker.RestartAsync();

        // Publishing fails while the client reconnects (transiently), then works again.
        var after = OutgoingMessage.FromText("after");
        await Outages.PublishUntilRecoveredAsync(bus, topic, after);

        // The live consumer was recovered with its connection; deliveries buffered before the restart are stale
        // (their acks are ignored) and come again, so duplicates are allowed, losses are not.
        while (seen.Count < 101)
        {
            var message = await ReceiveAsync(consumer);
            seen.TryAdd(message.MessageId, 0);
            await message.AckAsync();
        }

        Assert.All(before, m => Assert.True(seen.ContainsKey(m.MessageId!)));
        Assert.True(seen.ContainsKey(after.MessageId!));

        var backlog = new HashSet<string>();
        await using var late = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "backlog", MaxInFlight = 64 });
        while (backlog.Count < 101)
        {
            var message = await ReceiveAsync(late);
            backlog.Add(message.MessageId);
            await message.AckAsync();
        }

        Assert.All(before, m => Assert.Contains(m.MessageId!, backlog));
    }

    /// <summary>
    /// AMQP sends a message's header table in one frame (frame_max, 131,072 bytes by default) and header names as short
    /// strings: a message over either limit is refused before it is sent. A 200,000-character header once reached the
    /// broker, which closed the whole connection (501 FRAME_ERROR): later publishes failed, and a consumer's acks were
    /// lost, so it received its message again.
    /// </summary>
    [Fact]
    public async Task Headers_amqp_cannot_carry_are_refused_before_sending_and_the_connection_stays_up()
    {
        await using var bus = CreateBus();
        var topic = Unique("frame");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        var before = OutgoingMessage.FromText("before");
        await bus.PublishAsync(topic, before);
        var first = await ReceiveAsync(consumer);

        var huge = OutgoingMessage.FromText("x");
        huge.Headers["h"] = new string('a', 200_000);
        var refused = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync(topic, huge));
        Assert.Equal(BusFailureReason.InvalidMessage, refused.Reason);
        Assert.Contains("frame", refused.Message, StringComparison.Ordinal);

        var longName = OutgoingMessage.FromText("y");
        longName.Headers[new string('n', 300)] = "v";
        var batch = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("first of the batch"), longName]));
        Assert.Equal(BusFailureReason.InvalidMessage, batch.Reason);
        Assert.Contains("255", batch.Message, StringComparison.Ordinal);

        // The connection is up: the held message is acked, a new one arrives, and nothing else does (neither the
        // refused ones, nor the batch's first, nor the held one again).
        await first.AckAsync();
        var after = OutgoingMessage.FromText("after");
        await bus.PublishAsync(topic, after);
        var next = await ReceiveAsync(consumer);
        Assert.Equal(after.MessageId, next.MessageId);
        await next.AckAsync();
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await consumer.ReceiveAsync(quiet.Token));
    }

    /// <summary>
    /// Headers the broker writes (x-delivery-count, x-death, x-first-death-*…) are not taken from the application: an
    /// application's x-first-death-reason once made an ordinary message arrive as one the broker had dead-lettered.
    /// </summary>
    [Fact]
    public async Task Application_headers_named_like_the_brokers_are_not_read_as_the_brokers()
    {
        await using var bus = CreateBus();
        var topic = Unique("spoof");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxDeliveries = 3 });
        var sent = OutgoingMessage.FromText("first");
        sent.Headers["x-delivery-count"] = "7";
        sent.Headers["x-first-death-reason"] = "rejected";
        sent.Headers["kept"] = "yes";
        await bus.PublishAsync(topic, sent);

        var received = await ReceiveAsync(consumer);
        Assert.Equal(sent.MessageId, received.MessageId);
        Assert.Equal(1, received.DeliveryCount);
        Assert.Equal("yes", received.Headers["kept"]);
        Assert.False(received.Headers.ContainsKey(DeadLetterHeaders.Reason), "an ordinary message arrived with dead-letter headers");
        await received.AckAsync();
    }

    /// <summary>
    /// A keyed message settled while the broker is down: the settlement is dropped (the channel is gone), the broker
    /// requeues the message, and after recovery its key must flow again. The key was once held for good behind the
    /// settlement that never came, and with it every later message of the key.
    /// </summary>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_key_whose_message_was_settled_during_an_outage_flows_again_after_recovery(bool ack)
    {
        // An endpoint run by someone else (BUS_TEST_RABBITMQ_URL) cannot be stopped by the test.
        Assert.True(fixture.Broker.CanControlLifecycle, $"{fixture.Broker} cannot be stopped by the tests");

        await using var bus = CreateBus();
        var topic = Unique("outage-key");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 4 });
        var first = OutgoingMessage.FromText("m1", key: "k");
        await bus.PublishAsync(topic, first);
        var held = await ReceiveAsync(consumer);

        await fixture.Broker.StopAsync();
        try
        {
            await (ack ? held.AckAsync() : held.NackAsync());
        }
        finally
        {
            await fixture.Broker.StartAgainAsync();
        }

        var second = OutgoingMessage.FromText("m2", key: "k");
        await Outages.PublishUntilRecoveredAsync(bus, topic, second);
        var seen = new List<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!seen.Contains(second.MessageId!))
        {
            var message = await consumer.ReceiveAsync(timeout.Token);
            seen.Add(message.MessageId);
            await message.AckAsync();
        }

        // m1 comes back first (the broker requeued it), then m2: the key's order holds across the outage.
        Assert.Equal([first.MessageId!, second.MessageId!], seen.Distinct());
    }

    /// <summary>
    /// A dead-letter whose copy cannot be published (here its exchange is gone) gives the delivery back: RabbitMQ never
    /// takes back an unacknowledged delivery while its channel is open, so it once stayed with the consumer, holding a
    /// prefetch slot and its key, until the broker's consumer timeout closed the channel.
    /// </summary>
    [Fact]
    public async Task A_failed_dead_letter_gives_the_delivery_back_and_its_key_flows_on()
    {
        await using var bus = CreateBus();
        var topic = Unique("dlq-fails");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 4 });
        var first = OutgoingMessage.FromText("m1", key: "k");
        await bus.PublishAsync(topic, first);
        var poisoned = await ReceiveAsync(consumer);
        await using (var raw = await RawConnectionAsync())
        await using (var channel = await raw.CreateChannelAsync())
        {
            await channel.ExchangeDeleteAsync(bus.GetDeadLetterTopic(topic));
        }

        await Assert.ThrowsAnyAsync<Exception>(async () => await poisoned.DeadLetterAsync("poison"));
        var second = OutgoingMessage.FromText("m2", key: "k");
        await bus.PublishAsync(topic, second);

        var again = await ReceiveAsync(consumer);
        Assert.Equal(first.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await again.AckAsync();
        var next = await ReceiveAsync(consumer);
        Assert.Equal(second.MessageId, next.MessageId);
        await next.AckAsync();
    }

    [Fact]
    public async Task DeleteTopicAsync_removes_the_exchanges_and_the_named_groups_queues_and_a_later_use_declares_them_again()
    {
        var topic = Unique("del");
        await using var bus = CreateBus();
        await bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 3 });
        await using (await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g1")))
        {
        }

        await bus.PublishAsync(topic, OutgoingMessage.FromText("lost with the topic"));
        Assert.True(await QueueExistsAsync($"{topic}:g1"));
        Assert.True(await QueueExistsAsync($"{topic}.dlq:dlq"));
        Assert.True(await QueueExistsAsync($"{topic}:bus-topic-partitions"));

        await bus.DeleteTopicAsync(topic, ["g1", "never-used"]);

        Assert.False(await QueueExistsAsync($"{topic}:bus-topic-partitions"));
        Assert.False(await QueueExistsAsync($"{topic}:g1"));
        Assert.False(await QueueExistsAsync($"{topic}.dlq:dlq"));
        Assert.False(await ExchangeExistsAsync(topic));
        Assert.False(await ExchangeExistsAsync(topic + ".dlq"));

        await bus.PublishAsync(topic, OutgoingMessage.FromText("again"));
        Assert.True(await ExchangeExistsAsync(topic));
        Assert.True(await QueueExistsAsync($"{topic}.dlq:dlq"));
    }

    [Fact]
    public async Task Disposing_a_bus_deletes_its_private_reply_queues_and_exchanges()
    {
        var topic = Unique("rpc");
        var bus = CreateBus();
        string replyTopic;
        try
        {
            await using var responder = await bus.SubscribeAsync(topic, async (m, token) => await bus.ReplyAsync(m, OutgoingMessage.FromText("re"), token), SubscriptionOptions.ForGroup("responders"));
            var request = OutgoingMessage.FromText("ping");
            await bus.RequestAsync(topic, request, Wait);
            replyTopic = request.ReplyTo!;
            Assert.True(await QueueExistsAsync($"{replyTopic}:{replyTopic}"));
            Assert.True(await QueueExistsAsync($"{replyTopic}.dlq:dlq"));
        }
        finally
        {
            await bus.DisposeAsync();
        }

        Assert.False(await QueueExistsAsync($"{replyTopic}:{replyTopic}"));
        Assert.False(await QueueExistsAsync($"{replyTopic}.dlq:dlq"));
        Assert.False(await ExchangeExistsAsync(replyTopic));
        Assert.False(await ExchangeExistsAsync(replyTopic + ".dlq"));
        Assert.True(await ExchangeExistsAsync(topic)); // the application's topic stays
    }

    [Fact]
    public async Task The_broker_removes_the_reply_queues_of_a_bus_that_never_disposed()
    {
        // A crash, as the broker sees it: the requesting bus logs in as a user of its own, and the test then deletes
        // that user and closes its connections, so the bus can neither dispose (which would delete the queues itself)
        // nor reconnect. Its reply queues were declared with x-expires (reply-queue-expiry, 2 s here).
        var user = $"crash-{Guid.NewGuid():N}"[..18];
        const string Secret = "Cr4sh-s3cret-zq";
        await fixture.Broker.ExecAsync(["rabbitmqctl", "add_user", user, Secret]);
        await fixture.Broker.ExecAsync(["rabbitmqctl", "set_permissions", "-p", "/", user, ".*", ".*", ".*"]);
        var doomedUrl = new UriBuilder(fixture.ConnectionUri) { UserName = user, Password = Secret, Query = "reply-queue-expiry=2" }.Uri.ToString();
        var doomed = MessageBus.Create(new BusOptions { Url = doomedUrl, ConnectTimeout = TimeSpan.FromSeconds(5), OperationTimeout = TimeSpan.FromSeconds(5) });
        var userDeleted = false;
        try
        {
            await using var responding = CreateBus();
            var topic = Unique("crash-rpc");
            await using var responder = await responding.SubscribeAsync(topic, async (m, token) => await responding.ReplyAsync(m, OutgoingMessage.FromText("re"), token), SubscriptionOptions.ForGroup("responders"));
            var request = OutgoingMessage.FromText("ping");
            await doomed.RequestAsync(topic, request, Wait);
            var replyTopic = request.ReplyTo!;
            Assert.True(await QueueExistsAsync($"{replyTopic}:{replyTopic}"));

            await fixture.Broker.ExecAsync(["rabbitmqctl", "delete_user", user]);
            userDeleted = true;
            var connections = await fixture.Broker.ExecAsync(["rabbitmqctl", "list_connections", "--silent", "user", "pid"]);
            foreach (var line in connections.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                var columns = line.Split('\t');
                if (columns.Length == 2 && columns[0] == user)
                {
                    await fixture.Broker.ExecAsync(["rabbitmqctl", "close_connection", columns[1], "the test's crash"]);
                }
            }

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while ((await QueueExistsAsync($"{replyTopic}:{replyTopic}") || await QueueExistsAsync($"{replyTopic}.dlq:dlq")) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(500);
            }

            Assert.False(await QueueExistsAsync($"{replyTopic}:{replyTopic}"), "the reply queue outlived its expiry by 30 s");
            Assert.False(await QueueExistsAsync($"{replyTopic}.dlq:dlq"), "the reply dead-letter queue outlived its expiry by 30 s");
            Assert.True(await QueueExistsAsync($"{topic}:responders")); // the application's queue stays
        }
        finally
        {
            await doomed.DisposeAsync(); // after the crash its deletes fail (logged, not thrown)
            if (!userDeleted)
            {
                await fixture.Broker.ExecAsync(["rabbitmqctl", "delete_user", user]);
            }
        }
    }

    private Task<bool> QueueExistsAsync(string queue) => ExistsAsync(channel => channel.QueueDeclarePassiveAsync(queue));

    private Task<bool> ExchangeExistsAsync(string exchange) => ExistsAsync(channel => channel.ExchangeDeclarePassiveAsync(exchange));

    /// <summary>A passive declaration succeeds when the object exists; a 404 closes the channel.</summary>
    private async Task<bool> ExistsAsync(Func<IChannel, Task> declarePassive)
    {
        await using var connection = await RawConnectionAsync();
        await using var channel = await connection.CreateChannelAsync();
        try
        {
            await declarePassive(channel);
            return true;
        }
        catch (RabbitMQ.Client.Exceptions.OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == 404)
        {
            return false;
        }
    }
}
