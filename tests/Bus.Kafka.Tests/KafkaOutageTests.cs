using System.Diagnostics;
using Bus.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Kafka.Tests;

/// <summary>A mock cluster of its own that the outage tests freeze (docker pause or SIGSTOP), so other classes are not disturbed.</summary>
public sealed class KafkaOutageFixture : IAsyncLifetime
{
    public KafkaTestCluster Cluster { get; private set; } = null!;

    public async Task InitializeAsync() => Cluster = await KafkaTestCluster.StartAsync(ownMock: true);

    public async Task DisposeAsync() => await Cluster.DisposeAsync();
}

/// <summary>
/// Behaviour against a frozen cluster (the mock's process is stopped: connections stay up, nothing answers), as
/// RabbitMqOutageTests checks for RabbitMQ.
/// </summary>
public sealed class KafkaOutageTests(KafkaOutageFixture fixture, ITestOutputHelper output) : IClassFixture<KafkaOutageFixture>
{
    private KafkaTestCluster Cluster => fixture.Cluster;

    /// <summary>A bus on this class's cluster; <paramref name="settings"/> adds librdkafka properties (producer.… and so on).</summary>
    private MessageBus CreateBus(TimeSpan operationTimeout, params (string Name, string Value)[] settings)
    {
        var options = new BusOptions { Url = Cluster.Url, ConnectTimeout = TimeSpan.FromSeconds(10), OperationTimeout = operationTimeout };
        foreach (var (name, fixedValue) in KafkaFixture.TestSettings())
        {
            options.Settings[name] = fixedValue;
        }

        options.Settings["bootstrap.servers"] = Cluster.BootstrapServers;
        foreach (var (name, value) in settings)
        {
            options.Settings[name] = value;
        }

        return MessageBus.Create(options, new TimedLogs(output));
    }

    private static async Task<List<string>> ReceiveIdsAsync(MessageConsumer consumer, int count)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        var ids = new List<string>();
        while (ids.Count < count)
        {
            var message = await consumer.ReceiveAsync(timeout.Token);
            ids.Add(message.MessageId);
            await message.AckAsync();
        }

        return ids;
    }

    /// <summary>
    /// A batch cut short by a freeze, as on the other backends; from inside the call (the mock freezes while the adapter
    /// is about to produce the 2,501st record), since a freeze from outside landed after the mock had taken all 90,000.
    /// </summary>
    [Fact]
    public async Task A_batch_cut_short_by_a_freeze_says_which_messages_were_not_confirmed()
    {
        await using var bus = CreateBus(TimeSpan.FromSeconds(5));
        await Outages.BatchCutShortAsync(bus, $"out-partial-{Guid.NewGuid():N}"[..28], 5_000, Cluster.PauseAsync, Cluster.ResumeAsync, output, freezeFromInside: true);
    }

    /// <summary>
    /// A batch twenty times larger than librdkafka's local queue (1,000 records here) for a frozen cluster: the first
    /// 1,000 wait unanswered, the rest for room. Those 1,000 time out after message.timeout.ms (1 s here, within the
    /// operation timeout of 4 s), which fails the call and frees room; the adapter then produces no more, so the call
    /// fails in about that time. It used to produce the next 1,000 into the room, which timed out in turn: twenty
    /// timeouts one after another. Every message is listed as unconfirmed.
    /// </summary>
    [Fact]
    public async Task A_batch_waiting_for_room_in_the_local_queue_of_a_frozen_cluster_fails_when_its_first_records_time_out()
    {
        var topic = $"out-room-{Guid.NewGuid():N}"[..28];
        await using (var setUp = CreateBus(TimeSpan.FromSeconds(30)))
        {
            await setUp.EnsureTopicAsync(topic); // the mock auto-creates topics, which takes longer than the timeouts here
        }

        await using var bus = CreateBus(TimeSpan.FromSeconds(4), ("producer.queue.buffering.max.messages", "1000"), ("producer.message.timeout.ms", "1000"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("connects the producer"));
        var messages = Enumerable.Range(0, 20_000).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();

        await Cluster.PauseAsync();
        PublishBatchException error;
        var watch = Stopwatch.StartNew();
        try
        {
            error = await Assert.ThrowsAsync<PublishBatchException>(() => bus.PublishBatchAsync(topic, messages).AsTask().WaitAsync(TimeSpan.FromSeconds(90)));
        }
        finally
        {
            await Cluster.ResumeAsync();
        }

        output.WriteLine($"failed after {watch.ElapsedMilliseconds} ms: {error.Message}");
        // Twenty timeouts of at least 1 s one after another, before; one or two now (a record may find the freed room
        // before the first failure is seen). The bound is loose so that a loaded machine does not fail it.
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(12), $"took {watch.Elapsed}");
        Assert.Equal(messages, error.UnconfirmedMessages);
        Assert.Equal(BusFailureReason.Timeout, error.Reason);
        Assert.True(error.IsTransient, error.ToString());
    }

    /// <summary>
    /// A batch twenty times larger than librdkafka's local queue (queue.buffering.max.messages, 100,000 by default;
    /// 1,000 here) waits for room as delivery frees it, instead of failing the records that did not fit at once
    /// (Local_QueueFull, which failed about 3,000 of these 20,000 before).
    /// </summary>
    [Fact]
    public async Task A_batch_larger_than_the_local_queue_is_published_whole()
    {
        await using var bus = CreateBus(TimeSpan.FromSeconds(10), ("producer.queue.buffering.max.messages", "1000"));
        var topic = $"out-queue-{Guid.NewGuid():N}"[..28];
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 256 });
        var messages = Enumerable.Range(0, 20_000).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();

        await bus.PublishBatchAsync(topic, messages);

        var received = await ReceiveIdsAsync(consumer, messages.Count);
        Assert.Equal(messages.Select(m => m.MessageId).Order(), received.Order());
    }

    /// <summary>
    /// librdkafka's synchronous commit before close waits socket.timeout.ms (60 s) for a frozen cluster: disposing a bus
    /// with a subscription (which acknowledged a message, so it has an offset to commit) and a pull consumer (holding
    /// one) waited 20 s for the first close; now the operation timeout, then briefly for the rest.
    /// </summary>
    [Fact]
    public async Task Disposing_a_bus_while_the_cluster_is_frozen_completes_in_bounded_time()
    {
        var topic = $"out-dispose-{Guid.NewGuid():N}"[..28];
        await using (var setUp = CreateBus(TimeSpan.FromSeconds(30)))
        {
            await setUp.EnsureTopicAsync(topic); // the mock auto-creates topics, which can take longer than 3 s
        }

        // 5 s, not 3: the mock cluster forms a new group only after its initial rebalance delay (3 s, fixed in
        // librdkafka's mock), so a bus with a 3 s operation timeout cannot join a group there at all.
        var bus = CreateBus(TimeSpan.FromSeconds(5));
        var joinWatch = Stopwatch.StartNew();
        var subscription = await bus.SubscribeAsync(topic, (_, _) => ValueTask.CompletedTask, new SubscriptionOptions { Group = "g", ShutdownTimeout = TimeSpan.FromSeconds(2), StartPosition = StartPosition.Earliest });
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "pull", StartPosition = StartPosition.Earliest });
        output.WriteLine($"joined both after {joinWatch.ElapsedMilliseconds} ms");
        await bus.PublishAsync(topic, "warm");
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(15)))
        {
            var held = await consumer.ReceiveAsync(wait.Token); // held, never settled: its offset is not committed
            Assert.Equal("warm", held.GetText());
        }

        await Outages.DisposeWhileFrozenAsync(bus, Cluster.PauseAsync, Cluster.ResumeAsync, output);
        GC.KeepAlive(subscription);

        // The cluster serves a new bus: the held message was never committed, so group "pull" gets it again.
        // Joining may wait for the mock to expire the old members its frozen process never saw leave (session 6 s).
        await using var after = CreateBus(TimeSpan.FromSeconds(30));
        await after.PublishAsync(topic, "after");
        await using var again = await after.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "pull" });
        using var receive = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var texts = new List<string>();
        while (!(texts.Contains("after") && texts.Contains("warm"))) // on different partitions, in either order
        {
            var message = await again.ReceiveAsync(receive.Token);
            texts.Add(message.GetText());
            await message.AckAsync();
        }

        output.WriteLine($"after unpause, group pull received: {string.Join(", ", texts)}");
        Assert.Contains("warm", texts);
    }
}
