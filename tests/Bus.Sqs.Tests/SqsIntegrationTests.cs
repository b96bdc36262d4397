using System.Text;
using Amazon.Runtime;
using Amazon.SQS;
using Amazon.SQS.Model;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Xunit;

namespace Bus.Sqs.Tests;

/// <summary>One fauxqs (or BUS_TEST_SQS_URL's endpoint is not used here: these tests need an endpoint override) for the integration tests.</summary>
public sealed class FauxqsFixture : IAsyncLifetime
{
    public FauxqsServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await FauxqsServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();

    public AmazonSQSClient RawClient() => new(new BasicAWSCredentials("test", "test"), new AmazonSQSConfig { ServiceURL = Server.Endpoint, AuthenticationRegion = "us-east-1" });
}

/// <summary>
/// The adapter against the fauxqs emulator (not real SQS): FIFO vs standard queues, interop with the raw AWS SDK,
/// limits. fauxqs differences these tests meet: a FIFO receive returns one message per message group (real SQS may
/// return several), which only slows FIFO consumption; nothing here depends on it.
/// </summary>
public sealed class SqsIntegrationTests(FauxqsFixture fixture) : IClassFixture<FauxqsFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(15);
    private static int _sequence;

    private static string Name(string hint) => $"it{Interlocked.Increment(ref _sequence)}-{hint}-{Guid.NewGuid().ToString("N")[..6]}";

    private MessageBus CreateBus() => MessageBus.Create(fixture.Server.Url());

    private static async Task<ReceivedMessage> ReceiveAsync(MessageConsumer consumer)
    {
        using var timeout = new CancellationTokenSource(Wait);
        return await consumer.ReceiveAsync(timeout.Token);
    }

    /// <summary>
    /// Another client's message whose String attribute happens to be named "bus" and holds headers that are not strings:
    /// it is delivered (its headers as JSON text), and so are the messages received with it. Such a message once made
    /// the decoder throw past its fallback, and the whole receive was dropped: back after the visibility timeout,
    /// failing together, until SQS's redrive took all of them to the dead-letter queue unseen.
    /// </summary>
    [Fact]
    public async Task A_foreign_bus_attribute_with_headers_that_are_not_strings_is_delivered_with_its_batch()
    {
        await using var bus = CreateBus();
        var topic = Name("foreign");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 10 });
        using var raw = fixture.RawClient();
        var url = (await raw.GetQueueUrlAsync(topic + "_g")).QueueUrl;
        await raw.SendMessageBatchAsync(new SendMessageBatchRequest
        {
            QueueUrl = url,
            Entries =
            [
                new() { Id = "a", MessageBody = "plain-a" },
                new() { Id = "p", MessageBody = "foreign", MessageAttributes = new() { ["bus"] = new MessageAttributeValue { DataType = "String", StringValue = "{\"id\":\"x\",\"h\":{\"n\":1,\"flag\":true,\"o\":{\"a\":[1,2]},\"s\":\"text\"}}" } } },
                new() { Id = "b", MessageBody = "plain-b" },
            ],
        });

        var received = new Dictionary<string, ReceivedMessage>();
        while (received.Count < 3)
        {
            var message = await ReceiveAsync(consumer);
            received[message.GetText()] = message;
            await message.AckAsync();
        }

        var foreign = received["foreign"];
        Assert.Equal("1", foreign.Headers["n"]);
        Assert.Equal("true", foreign.Headers["flag"]);
        Assert.Equal("{\"a\":[1,2]}", foreign.Headers["o"]);
        Assert.Equal("text", foreign.Headers["s"]);
        Assert.Contains("plain-a", received.Keys);
        Assert.Contains("plain-b", received.Keys);
    }

    [Fact]
    public async Task A_topic_named_fifo_uses_fifo_queues_and_keeps_per_key_order()
    {
        await using var bus = CreateBus();
        var topic = Name("orders") + ".fifo";
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "billing", MaxInFlight = 1 });
        var messages = Enumerable.Range(0, 25).Select(i => OutgoingMessage.FromText($"m{i}", $"key-{i % 3}")).ToList();
        await bus.PublishBatchAsync(topic, messages);

        using var raw = fixture.RawClient();
        var url = (await raw.GetQueueUrlAsync(topic[..^5] + "_billing.fifo")).QueueUrl;
        var attributes = await raw.GetQueueAttributesAsync(url, ["FifoQueue", "RedrivePolicy"]);
        Assert.Equal("true", attributes.Attributes["FifoQueue"]);
        Assert.Contains(topic[..^5] + "-dlq_dlq.fifo", attributes.Attributes["RedrivePolicy"], StringComparison.Ordinal);

        var seen = new Dictionary<string, List<int>>();
        for (var i = 0; i < messages.Count; i++)
        {
            var message = await ReceiveAsync(consumer);
            var n = int.Parse(message.GetText()[1..], System.Globalization.CultureInfo.InvariantCulture);
            (seen.TryGetValue(message.Key!, out var list) ? list : seen[message.Key!] = []).Add(n);
            await message.AckAsync();
        }

        foreach (var (key, order) in seen)
        {
            Assert.Equal(order.OrderBy(n => n), order);
        }

        Assert.Equal(3, seen.Count);
    }

    [Fact]
    public async Task A_plain_topic_uses_standard_queues_and_ordered_must_match_the_name()
    {
        await using var bus = CreateBus();
        var topic = Name("plain");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        using var raw = fixture.RawClient();
        var url = (await raw.GetQueueUrlAsync(topic + "_g")).QueueUrl;
        var attributes = await raw.GetQueueAttributesAsync(url, ["All"]);
        Assert.False(attributes.Attributes.ContainsKey("FifoQueue") && attributes.Attributes["FifoQueue"] == "true");

        var error = await Assert.ThrowsAsync<BusException>(() => bus.EnsureTopicAsync(Name("x"), new TopicOptions { Ordered = true }).AsTask());
        Assert.Equal(BusFailureReason.TopicConflict, error.Reason);
        Assert.Contains(".fifo", error.Message, StringComparison.Ordinal);
        await bus.EnsureTopicAsync(Name("y") + ".fifo", new TopicOptions { Ordered = true });
    }

    [Fact]
    public async Task A_message_sent_with_the_raw_sdk_is_read_through_bus()
    {
        await using var bus = CreateBus();
        var topic = Name("interop");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("reader"));
        using var raw = fixture.RawClient();
        var url = (await raw.GetQueueUrlAsync(topic + "_reader")).QueueUrl;
        var sent = await raw.SendMessageAsync(new SendMessageRequest
        {
            QueueUrl = url,
            MessageBody = "from the raw client ✓",
            MessageAttributes = new() { ["color"] = new MessageAttributeValue { DataType = "String", StringValue = "blue" } },
        });

        var message = await ReceiveAsync(consumer);
        Assert.Equal("from the raw client ✓", message.GetText());
        Assert.Equal(sent.MessageId, message.MessageId);
        Assert.Equal("blue", message.Headers["color"]);
        Assert.Equal(1, message.DeliveryCount);
        await message.AckAsync();
    }

    [Fact]
    public async Task A_message_published_through_bus_is_read_with_the_raw_sdk()
    {
        await using var bus = CreateBus();
        var topic = Name("outward");
        await bus.EnsureTopicAsync(topic);
        // A group queue made by someone else's tooling: Bus publishes reach it once it is listed.
        using var raw = fixture.RawClient();
        var url = (await raw.CreateQueueAsync(topic + "_external")).QueueUrl;
        await Task.Delay(TimeSpan.FromSeconds(1)); // past group-cache-ms (500 ms)
        var outgoing = OutgoingMessage.FromText("hello raw", "k1");
        outgoing.Headers["h"] = "ü";
        await bus.PublishAsync(topic, outgoing);

        var response = await raw.ReceiveMessageAsync(new ReceiveMessageRequest { QueueUrl = url, WaitTimeSeconds = 5, MessageAttributeNames = ["All"] });
        var message = Assert.Single(response.Messages);
        Assert.Equal("hello raw", message.Body);
        var bus_ = message.MessageAttributes["bus"].StringValue;
        Assert.Contains(outgoing.MessageId!, bus_, StringComparison.Ordinal);
        Assert.Contains("\"k\":\"k1\"", bus_, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_largest_declared_binary_body_round_trips_and_one_byte_more_fails_before_sending()
    {
        await using var bus = CreateBus();
        var topic = Name("large");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        var limit = bus.Capabilities.MaxMessageSize;
        var body = new byte[limit];
        new Random(3).NextBytes(body);
        await bus.PublishAsync(topic, new OutgoingMessage(body));
        var message = await ReceiveAsync(consumer);
        Assert.Equal(body, message.Body.ToArray());
        await message.AckAsync();

        var error = await Assert.ThrowsAsync<MessageTooLargeException>(() => bus.PublishAsync(topic, new OutgoingMessage(new byte[limit + 1])).AsTask());
        Assert.Equal(limit, error.Limit);
    }

    [Fact]
    public async Task Delays_beyond_15_minutes_are_rejected()
    {
        await using var bus = CreateBus();
        var error = await Assert.ThrowsAsync<BusException>(() => bus.PublishAsync(Name("late"), new OutgoingMessage("x"u8.ToArray()) { Delay = TimeSpan.FromSeconds(901) }).AsTask());
        Assert.Equal(BusFailureReason.NotSupported, error.Reason);
        Assert.Contains("900", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batch_is_cut_by_bytes_as_well_as_count_and_reaches_every_group_in_order()
    {
        await using var bus = CreateBus();
        var topic = Name("cut");
        await using var first = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "a", MaxInFlight = 30 });
        await using var second = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "b", MaxInFlight = 30 });

        // 3 binary bodies of 90,000 bytes (120,000 base64 characters each: two fit a request, three do not) among
        // 22 small ones: requests of 10 messages or fewer bytes, built as each is sent.
        var messages = Enumerable.Range(0, 25)
            .Select(i => i is 3 or 4 or 17 ? new OutgoingMessage(Enumerable.Repeat((byte)i, 90_000).ToArray()) { Key = $"m{i}" } : new OutgoingMessage(new[] { (byte)0xFF, (byte)i }) { Key = $"m{i}" })
            .ToList();
        await bus.PublishBatchAsync(topic, messages);

        foreach (var consumer in new[] { first, second })
        {
            var received = new List<ReceivedMessage>();
            for (var i = 0; i < messages.Count; i++)
            {
                var message = await ReceiveAsync(consumer);
                received.Add(message);
                await message.AckAsync();
            }

            // Standard queues do not promise order; every message arrives once, byte for byte.
            Assert.Equal(messages.Select(m => m.Key).Order(), received.Select(m => m.Key).Order());
            foreach (var message in received)
            {
                Assert.Equal(messages.Single(m => m.Key == message.Key).Body.ToArray(), message.Body.ToArray());
            }
        }
    }

    /// <summary>
    /// A batch fanned out to two groups' queues, one of which takes messages of at most 40,000 bytes
    /// (MaximumMessageSize): SendMessageBatch refuses the three larger messages there, entry by entry, while the other
    /// queue takes everything. The exception lists exactly those three: a message counts as confirmed only once every
    /// group's queue has it. The messages are 30–50 KB, so requests are cut by SQS's 256 KiB batch limit (8 or fewer
    /// entries), not at 10: the indexes of the refused entries are mapped back across those cuts.
    /// </summary>
    [Fact]
    public async Task A_batch_one_groups_queue_partly_refuses_lists_exactly_the_refused_messages()
    {
        await using var bus = CreateBus();
        var topic = Name("partly");
        await using var small = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("small"));
        await using var large = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("large"));
        using var raw = fixture.RawClient();
        var smallQueue = (await raw.GetQueueUrlAsync(topic + "_small")).QueueUrl;
        await raw.SetQueueAttributesAsync(smallQueue, new Dictionary<string, string> { ["MaximumMessageSize"] = "40000" });
        int[] oversize = [7, 12, 21];
        var messages = Enumerable.Range(0, 25)
            .Select(i => OutgoingMessage.FromText(new string((char)('a' + (i % 26)), oversize.Contains(i) ? 50_000 : 30_000)))
            .ToList();

        var error = await Assert.ThrowsAsync<PublishBatchException>(() => bus.PublishBatchAsync(topic, messages).AsTask());

        Assert.Equal(oversize.Select(i => messages[i]), error.UnconfirmedMessages);
        Assert.Equal(BusFailureReason.PublishNotConfirmed, error.Reason);
        var inLarge = new List<string>();
        while (inLarge.Count < messages.Count)
        {
            var message = await ReceiveAsync(large);
            inLarge.Add(message.MessageId);
            await message.AckAsync();
        }

        Assert.Equal(messages.Select(m => m.MessageId).Order(), inLarge.Order());
        var inSmall = new List<string>();
        while (inSmall.Count < messages.Count - oversize.Length)
        {
            var message = await ReceiveAsync(small);
            inSmall.Add(message.MessageId);
            await message.AckAsync();
        }

        Assert.Equal(messages.Where((_, i) => !oversize.Contains(i)).Select(m => m.MessageId).Order(), inSmall.Order());
    }

    [Fact]
    public async Task A_batch_with_one_message_sqs_cannot_take_sends_nothing()
    {
        await using var bus = CreateBus();
        var topic = Name("refused");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g" });
        var messages = Enumerable.Range(0, 30).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();
        messages[25].Delay = TimeSpan.FromSeconds(901);

        var error = await Assert.ThrowsAsync<PublishBatchException>(() => bus.PublishBatchAsync(topic, messages).AsTask());
        Assert.Equal(BusFailureReason.NotSupported, error.Reason);
        Assert.Equal(messages, error.UnconfirmedMessages);

        await bus.PublishAsync(topic, OutgoingMessage.FromText("after"));
        var only = await ReceiveAsync(consumer);
        Assert.Equal("after", only.GetText());
        await only.AckAsync();
        using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => consumer.ReceiveAsync(quiet.Token).AsTask());
    }

    [Fact]
    public async Task An_ack_is_done_when_queued_and_a_delete_that_fails_is_logged()
    {
        using var logs = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Debug).AddProvider(logs));
        await using var bus = MessageBus.Create(new BusOptions { Url = fixture.Server.Url() }, loggerFactory);
        var topic = Name("lost-ack");
        var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g" });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        var message = await ReceiveAsync(consumer);

        using var raw = fixture.RawClient();
        await raw.DeleteQueueAsync((await raw.GetQueueUrlAsync(topic + "_g")).QueueUrl);
        await message.AckAsync(); // the queue is gone: nothing for the caller to do, SQS would deliver it again
        await consumer.DisposeAsync(); // sends what is queued

        Assert.Contains(logs.Collector.GetSnapshot(), e => e.Id.Id is 5014 or 5015 && e.Message.Contains(topic + "_g", StringComparison.Ordinal));
    }

    [Fact]
    public async Task A_group_opened_by_one_bus_receives_what_another_bus_publishes_next()
    {
        await using var publisher = CreateBus();
        await using var subscriber = CreateBus();
        var topic = Name("cross");
        await publisher.PublishAsync(topic, "before any group"); // the publisher now has a cached, empty group list
        await using var consumer = await subscriber.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("late"));
        await publisher.PublishAsync(topic, "after the group was established");
        var message = await ReceiveAsync(consumer);
        Assert.Equal("after the group was established", message.GetText());
        await message.AckAsync();
    }

    [Fact]
    public async Task Disposing_a_consumer_makes_its_unsettled_messages_visible_at_once()
    {
        await using var bus = MessageBus.Create(fixture.Server.Url());
        var topic = Name("release");
        var options = new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromMinutes(5) };
        var first = await bus.CreateConsumerAsync(topic, options);
        await bus.PublishAsync(topic, "held");
        var held = await ReceiveAsync(first);
        await first.DisposeAsync();
        await using var second = await bus.CreateConsumerAsync(topic, options);
        var again = await ReceiveAsync(second); // long before the 5-minute visibility timeout
        Assert.Equal(held.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await again.AckAsync();
    }

    [Fact]
    public async Task Fifo_deduplication_is_per_publish_by_default_and_by_message_id_when_asked()
    {
        foreach (var (setting, expected) in new[] { ("", 2), ("&deduplication=message-id", 1) })
        {
            await using var bus = MessageBus.Create(fixture.Server.Url(setting));
            var topic = Name("dedup") + ".fifo";
            await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
            await bus.PublishAsync(topic, new OutgoingMessage("x"u8.ToArray()) { MessageId = "same-id", Key = "k" });
            await bus.PublishAsync(topic, new OutgoingMessage("x"u8.ToArray()) { MessageId = "same-id", Key = "k" });
            var received = 0;
            using var quiet = new CancellationTokenSource(TimeSpan.FromSeconds(3));
            try
            {
                while (true)
                {
                    var message = await consumer.ReceiveAsync(quiet.Token);
                    received++;
                    await message.AckAsync();
                }
            }
            catch (OperationCanceledException)
            {
            }

            Assert.Equal(expected, received);
        }
    }

    [Fact]
    public async Task The_fifo_setting_and_the_sqs_fifo_scheme_put_every_topic_on_fifo_queues()
    {
        await using var bySetting = MessageBus.Create(fixture.Server.Url("&fifo=true"));
        Assert.True(bySetting.Capabilities.Supports(BusFeatures.OrderedRetry));
        Assert.False(bySetting.Capabilities.Supports(BusFeatures.DelayedDelivery));
        await using var byScheme = MessageBus.Create(fixture.Server.Url().Replace("sqs://", "sqs-fifo://", StringComparison.Ordinal));
        var topic = Name("allfifo");
        await using var consumer = await byScheme.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        using var raw = fixture.RawClient();
        Assert.EndsWith("_g.fifo", (await raw.GetQueueUrlAsync(topic + "_g.fifo")).QueueUrl, StringComparison.Ordinal);

        // The same queues as topic "<name>.fifo" on sqs://.
        await using var plain = CreateBus();
        await plain.PublishAsync(topic + ".fifo", OutgoingMessage.FromText("shared", "k"));
        var message = await ReceiveAsync(consumer);
        Assert.Equal("shared", message.GetText());
        await message.AckAsync();

        var error = await Assert.ThrowsAsync<BusException>(() => byScheme.PublishAsync(topic, new OutgoingMessage("x"u8.ToArray()) { Delay = TimeSpan.FromSeconds(1) }).AsTask());
        Assert.Equal(BusFailureReason.NotSupported, error.Reason);
    }

    [Fact]
    public async Task Messages_released_unseen_at_dispose_keep_their_delivery_count()
    {
        await using var bus = CreateBus();
        var topic = Name("unseen");
        var options = new SubscriptionOptions { Group = "g", MaxInFlight = 10 };
        var first = await bus.CreateConsumerAsync(topic, options);
        await bus.PublishBatchAsync(topic, Enumerable.Range(0, 5).Select(i => OutgoingMessage.FromText($"m{i}")).ToList());
        var seen = await ReceiveAsync(first);
        await Task.Delay(500); // the others arrive in the consumer's buffer, unseen by the application
        await first.DisposeAsync();

        await using var second = await bus.CreateConsumerAsync(topic, options);
        var counts = new Dictionary<string, int>();
        for (var i = 0; i < 5; i++)
        {
            var message = await ReceiveAsync(second);
            counts[message.MessageId] = message.DeliveryCount;
            await message.AckAsync();
        }

        Assert.Equal(2, counts[seen.MessageId]);
        Assert.All(counts.Where(c => c.Key != seen.MessageId), c => Assert.Equal(1, c.Value));
    }

    [Fact]
    public async Task DeleteTopicAsync_removes_the_named_groups_queues_and_the_dead_letter_queue()
    {
        var topic = Name("del");
        await using var bus = CreateBus();
        using var raw = fixture.RawClient();
        await using (await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g1")))
        {
        }

        Assert.True(await QueueExistsAsync(raw, $"{topic}_g1"));
        Assert.True(await QueueExistsAsync(raw, $"{topic}-dlq_dlq"));

        await bus.DeleteTopicAsync(topic, ["g1", "never-used"]);

        Assert.False(await QueueExistsAsync(raw, $"{topic}_g1"));
        Assert.False(await QueueExistsAsync(raw, $"{topic}-dlq_dlq"));
    }

    [Fact]
    public async Task Disposing_a_bus_deletes_its_private_reply_queues()
    {
        var topic = Name("rpc");
        var bus = CreateBus();
        string replyTopic;
        using var raw = fixture.RawClient();
        try
        {
            await using var responder = await bus.SubscribeAsync(topic, async (m, token) => await bus.ReplyAsync(m, OutgoingMessage.FromText("re"), token), SubscriptionOptions.ForGroup("responders"));
            var request = OutgoingMessage.FromText("ping");
            await bus.RequestAsync(topic, request, Wait);
            replyTopic = request.ReplyTo!;
            Assert.True(await QueueExistsAsync(raw, $"{replyTopic}_{replyTopic}"));
            Assert.True(await QueueExistsAsync(raw, $"{replyTopic}-dlq_dlq"));
        }
        finally
        {
            await bus.DisposeAsync();
        }

        Assert.False(await QueueExistsAsync(raw, $"{replyTopic}_{replyTopic}"));
        Assert.False(await QueueExistsAsync(raw, $"{replyTopic}-dlq_dlq"));
        Assert.True(await QueueExistsAsync(raw, $"{topic}_responders")); // the application's topic stays
    }

    private static async Task<bool> QueueExistsAsync(Amazon.SQS.AmazonSQSClient raw, string name)
    {
        try
        {
            await raw.GetQueueUrlAsync(name);
            return true;
        }
        catch (Amazon.SQS.Model.QueueDoesNotExistException)
        {
            return false;
        }
    }
}
