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

    private MessageBus CreateBus(TimeSpan operationTimeout)
    {
        var options = new BusOptions { Url = Cluster.Url, ConnectTimeout = TimeSpan.FromSeconds(10), OperationTimeout = operationTimeout };
        foreach (var (name, value) in KafkaFixture.TestSettings())
        {
            options.Settings[name] = value;
        }

        options.Settings["bootstrap.servers"] = Cluster.BootstrapServers;
        return MessageBus.Create(options, new TimedLogs(output));
    }

    /// <summary>
    /// A batch larger than librdkafka's local queue (queue.buffering.max.messages, 100,000 by default; 1,000 here) fails
    /// part way: the records that did not fit are refused at once (Local_QueueFull), those that did are delivered. The
    /// exception lists the refused ones, and publishing them again, until none is refused, completes the batch. (A
    /// freeze, as on the other backends, cannot be timed here: the mock takes a whole batch of 90,000 before a freeze
    /// by docker pause lands.)
    /// </summary>
    [Fact]
    public async Task A_batch_larger_than_the_local_queue_says_which_messages_were_not_confirmed()
    {
        var options = new BusOptions { Url = Cluster.Url, ConnectTimeout = TimeSpan.FromSeconds(10), OperationTimeout = TimeSpan.FromSeconds(10) };
        foreach (var (name, value) in KafkaFixture.TestSettings())
        {
            options.Settings[name] = value;
        }

        options.Settings["bootstrap.servers"] = Cluster.BootstrapServers;
        options.Settings["producer.queue.buffering.max.messages"] = "1000";
        await using var bus = MessageBus.Create(options, new TimedLogs(output));
        await Outages.BatchCutShortAsync(bus, $"out-partial-{Guid.NewGuid():N}"[..28], 20_000, () => Task.CompletedTask, () => Task.CompletedTask, output, freezeAtOnce: true);
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
