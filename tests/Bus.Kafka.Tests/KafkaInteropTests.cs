using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Kafka.Tests;

/// <summary>
/// Kafka-specific behaviour against a cluster (here: librdkafka's mock cluster, unless BUS_TEST_KAFKA_URL names a broker):
/// murmur2 placement, interoperability with the raw Confluent.Kafka client, and what is committed.
/// </summary>
public sealed class KafkaInteropTests(KafkaClusterFixture cluster, ITestOutputHelper output) : IClassFixture<KafkaClusterFixture>
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(20);

    private static string NewTopic(string hint) => $"it-{hint}-{Guid.NewGuid():N}"[..30];

    [Theory]
    [InlineData("21", -973932308)]
    [InlineData("foobar", -790332482)]
    [InlineData("a-little-bit-long-string", -985981536)]
    [InlineData("a-little-bit-longer-string", -1486304829)]
    [InlineData("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971)]
    [InlineData("abc", 479470107)]
    public void Murmur2_matches_the_java_client(string key, int expected)
        => Assert.Equal(expected, Murmur2.Hash(Encoding.UTF8.GetBytes(key)));

    [Fact]
    public async Task Keyed_messages_land_on_the_partition_java_would_pick()
    {
        var topic = NewTopic("murmur");
        await using var bus = MessageBus.Create(cluster.CreateOptions());
        await bus.EnsureTopicAsync(topic);
        var partitions = PartitionCount(topic);
        var keys = Enumerable.Range(0, 24).Select(i => $"key-{i}-ü").ToList();
        await bus.PublishBatchAsync(topic, keys.Select(k => OutgoingMessage.FromText("v", k)).ToList());

        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g-" + topic, StartPosition = StartPosition.Earliest, MaxInFlight = 64 });
        var seen = new Dictionary<string, int>();
        using var timeout = new CancellationTokenSource(Wait);
        while (seen.Count < keys.Count)
        {
            var message = await consumer.ReceiveAsync(timeout.Token);
            seen[message.Key!] = int.Parse(message.Position.Split(':')[0], System.Globalization.CultureInfo.InvariantCulture);
            await message.AckAsync();
        }

        foreach (var key in keys)
        {
            Assert.Equal(Murmur2.Partition(Encoding.UTF8.GetBytes(key), partitions), seen[key]);
        }

        Assert.True(seen.Values.Distinct().Count() > 1, "24 keys all on one partition: the test proves little");
    }

    [Fact]
    public async Task A_raw_client_record_is_read_through_bus()
    {
        var topic = NewTopic("raw-in");
        await using var bus = MessageBus.Create(cluster.CreateOptions());
        await bus.EnsureTopicAsync(topic);
        using (var producer = new ProducerBuilder<byte[], byte[]>(new ProducerConfig { BootstrapServers = cluster.BootstrapServers }).Build())
        {
            var headers = new Headers { { "x-app", Encoding.UTF8.GetBytes("ünïcødé ✓") }, { "bus-correlation-id", "c-1"u8.ToArray() } };
            await producer.ProduceAsync(topic, new Message<byte[], byte[]> { Key = Encoding.UTF8.GetBytes("k-ü"), Value = [0, 1, 2, 255], Headers = headers });
        }

        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g-" + topic, StartPosition = StartPosition.Earliest });
        using var timeout = new CancellationTokenSource(Wait);
        var message = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal(new byte[] { 0, 1, 2, 255 }, message.Body.ToArray());
        Assert.Equal("k-ü", message.Key);
        Assert.Equal("ünïcødé ✓", message.Headers["x-app"]);
        Assert.Equal("c-1", message.CorrelationId);
        Assert.False(message.Headers.ContainsKey("bus-correlation-id"));
        // No bus-message-id header: the position identifies the record.
        Assert.Equal(message.Position, message.MessageId);
        Assert.Equal(1, message.DeliveryCount);
        await message.AckAsync();
    }

    [Fact]
    public async Task A_bus_message_is_read_by_a_raw_client_with_bus_fields_as_headers()
    {
        var topic = NewTopic("raw-out");
        await using var bus = MessageBus.Create(cluster.CreateOptions());
        var sent = OutgoingMessage.FromText("hello", "k1");
        sent.CorrelationId = "corr-9";
        sent.ReplyTo = "replies";
        sent.Headers["h-utf8"] = "ünïcødé ✓";
        await bus.PublishAsync(topic, sent);

        using var consumer = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = "raw-" + topic }).Build();
        var partitions = PartitionCount(topic);
        consumer.Assign(Enumerable.Range(0, partitions).Select(p => new TopicPartitionOffset(topic, p, Offset.Beginning)));
        ConsumeResult<byte[], byte[]>? record = null;
        var deadline = DateTime.UtcNow + Wait;
        while (record is null && DateTime.UtcNow < deadline)
        {
            record = consumer.Consume(TimeSpan.FromMilliseconds(200));
        }

        Assert.NotNull(record);
        Assert.Equal("hello", Encoding.UTF8.GetString(record.Message.Value));
        Assert.Equal("k1", Encoding.UTF8.GetString(record.Message.Key));
        string Header(string name) => Encoding.UTF8.GetString(record.Message.Headers.GetLastBytes(name));
        Assert.Equal(sent.MessageId, Header("bus-message-id"));
        Assert.Equal("corr-9", Header("bus-correlation-id"));
        Assert.Equal("replies", Header("bus-reply-to"));
        Assert.Equal("text/plain; charset=utf-8", Header("bus-content-type"));
        Assert.Equal("ünïcødé ✓", Header("h-utf8"));
        Assert.Equal(Murmur2.Partition("k1"u8.ToArray(), partitions), record.Partition.Value);
        consumer.Close();
    }

    [Fact]
    public async Task Only_the_contiguous_acknowledged_prefix_is_committed()
    {
        var topic = NewTopic("prefix");
        var group = "g-" + topic;
        await using var bus = MessageBus.Create(cluster.CreateOptions());
        await bus.EnsureTopicAsync(topic);
        await using (var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, MaxInFlight = 16, PerKeyOrdering = false }))
        {
            // One key: one partition, offsets 0..5 in order.
            await bus.PublishBatchAsync(topic, Enumerable.Range(0, 6).Select(i => OutgoingMessage.FromText($"m{i}", "one-key")).ToList());
            var received = new List<ReceivedMessage>();
            using var timeout = new CancellationTokenSource(Wait);
            while (received.Count < 6)
            {
                received.Add(await consumer.ReceiveAsync(timeout.Token));
            }

            foreach (var message in received.Where(m => m.GetText() != "m2"))
            {
                await message.AckAsync();
            }
        } // closed with m2 unacknowledged

        var partition = Murmur2.Partition("one-key"u8.ToArray(), PartitionCount(topic));
        using var raw = new ConsumerBuilder<byte[], byte[]>(new ConsumerConfig { BootstrapServers = cluster.BootstrapServers, GroupId = group }).Build();
        var committed = raw.Committed([new TopicPartition(topic, partition)], TimeSpan.FromSeconds(10));
        Assert.Equal(2, committed[0].Offset.Value);

        // The next consumer of the group starts at m2 and gets m2..m5 again (m3..m5 as duplicates, never a gap).
        await using var next = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, MaxInFlight = 16 });
        using var again = new CancellationTokenSource(Wait);
        var first = await next.ReceiveAsync(again.Token);
        Assert.Equal("m2", first.GetText());
        Assert.Equal(2, first.DeliveryCount); // counted within this bus
    }

    [Fact]
    public async Task Ensure_creates_with_the_partition_count_or_says_why_it_could_not()
    {
        var topic = NewTopic("ensure");
        using var logs = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(logs));
        await using var bus = MessageBus.Create(cluster.CreateOptions(), loggerFactory);
        await bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 2 });
        await bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 2 });
        var partitions = PartitionCount(topic);
        if (partitions == 2)
        {
            // A cluster that answers CreateTopics: a different count is a conflict.
            var conflict = await Assert.ThrowsAsync<BusException>(() => bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 3 }).AsTask());
            Assert.Equal(BusFailureReason.TopicConflict, conflict.Reason);
            Assert.Contains(topic, conflict.Message, StringComparison.Ordinal);
        }
        else
        {
            // The librdkafka mock cluster: no CreateTopics, auto-created with its default count; the log says so.
            var events = logs.Collector.GetSnapshot();
            foreach (var e in events.Where(e => e.Id.Id is 4003 or 4004))
            {
                output.WriteLine($"{e.Id.Id}: {e.Message}");
            }

            Assert.Contains(events, e => e.Id.Id == 4004 && e.Message.Contains(topic, StringComparison.Ordinal));
        }
    }

    private int PartitionCount(string topic)
    {
        using var admin = new AdminClientBuilder(new AdminClientConfig { BootstrapServers = cluster.BootstrapServers }).Build();
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            var metadata = admin.GetMetadata(topic, TimeSpan.FromSeconds(5));
            var entry = metadata.Topics.Single(t => t.Topic == topic);
            if (!entry.Error.IsError && entry.Partitions.Count > 0)
            {
                return entry.Partitions.Count;
            }

            Assert.True(DateTime.UtcNow < deadline, $"no metadata for {topic}: {entry.Error}");
            Thread.Sleep(100);
        }
    }
}
