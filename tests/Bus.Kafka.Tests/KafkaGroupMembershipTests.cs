using System.Collections.Concurrent;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Kafka.Tests;

/// <summary>
/// Group membership across rebalances and given-up joins, against a cluster (here librdkafka's mock cluster, unless
/// BUS_TEST_KAFKA_URL names a broker): no member is left holding partitions it does not fetch.
/// </summary>
public sealed class KafkaGroupMembershipTests(KafkaClusterFixture cluster, ITestOutputHelper output) : IClassFixture<KafkaClusterFixture>
{
    private static string NewTopic(string hint) => $"gm-{hint}-{Guid.NewGuid():N}"[..30];

    /// <summary>
    /// A consumer whose backlog is full pauses fetching (flow control). librdkafka keeps that pause across a rebalance,
    /// while the adapter took a new assignment for unpaused: the partitions it got back were never fetched again, and
    /// with its session alive nobody else took them.
    /// </summary>
    [Fact]
    public async Task A_consumer_paused_by_flow_control_fetches_again_after_a_rebalance()
    {
        var topic = NewTopic("pause");
        var group = "g-" + topic;
        await using var bus = MessageBus.Create(cluster.CreateOptions());
        await bus.EnsureTopicAsync(topic);
        await using var first = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, MaxInFlight = 1, PerKeyOrdering = false });
        const int Count = 12_000; // more than the 10,000 a consumer buffers before it pauses
        for (var i = 0; i < Count; i += 2_000)
        {
            await bus.PublishBatchAsync(topic, Enumerable.Range(i, 2_000).Select(n => OutgoingMessage.FromText("m" + n)).ToList());
        }

        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(20)))
        {
            var held = await first.ReceiveAsync(wait.Token); // held: the backlog fills up and fetching pauses
            await Task.Delay(TimeSpan.FromSeconds(4));

            // A second member joins: the first gives its partitions up and gets some of them back.
            await using var otherBus = MessageBus.Create(cluster.CreateOptions());
            await using var second = await otherBus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, MaxInFlight = 64, PerKeyOrdering = false });
            await Task.Delay(TimeSpan.FromSeconds(3));
            await held.AckAsync(); // its partition was revoked: ignored, but the credit is free

            var counts = new ConcurrentDictionary<string, int>();
            await Task.WhenAll(DrainAsync(first, "first", counts), DrainAsync(second, "second", counts));
            output.WriteLine(string.Join(", ", counts.Select(c => $"{c.Key}: {c.Value}")));
            Assert.True(counts.Values.Sum() >= Count, $"{counts.Values.Sum()} of {Count} received after the rebalance");
            Assert.True(counts.GetValueOrDefault("first") > 0, "the first consumer received nothing from the partitions it got back");
        }

        static async Task DrainAsync(MessageConsumer consumer, string name, ConcurrentDictionary<string, int> counts)
        {
            using var idle = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                while (true)
                {
                    var message = await consumer.ReceiveAsync(idle.Token);
                    counts.AddOrUpdate(name, 1, (_, n) => n + 1);
                    await message.AckAsync();
                    idle.CancelAfter(TimeSpan.FromSeconds(8));
                }
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    /// <summary>
    /// A join that outlasts the operation timeout fails for the caller, but librdkafka goes on joining: the member it
    /// became once held its partitions for good, fetching for nobody. Core now closes such a receiver when it opens.
    /// </summary>
    [Fact]
    public async Task A_join_given_up_on_leaves_no_member_holding_partitions()
    {
        var topic = NewTopic("given-up");
        var group = "g-" + topic;
        await using var bus = MessageBus.Create(cluster.CreateOptions());
        await bus.EnsureTopicAsync(topic);

        var hurriedOptions = cluster.CreateOptions();
        hurriedOptions.OperationTimeout = TimeSpan.FromMilliseconds(1500); // shorter than a group join takes on the mock cluster (about 3 s)
        await using var hurried = MessageBus.Create(hurriedOptions);
        await hurried.EnsureTopicAsync(topic);
        var failure = await Assert.ThrowsAsync<BusException>(async () => await hurried.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group }));
        Assert.Equal(BusFailureReason.Timeout, failure.Reason);
        await Task.Delay(TimeSpan.FromSeconds(8)); // the abandoned join completes (and is closed) meanwhile

        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, MaxInFlight = 64 });
        var keys = Enumerable.Range(0, 40).Select(i => $"k{i}").ToList(); // spread over every partition
        await bus.PublishBatchAsync(topic, keys.Select(k => OutgoingMessage.FromText("v", k)).ToList());
        var seen = new HashSet<string>();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        while (seen.Count < keys.Count)
        {
            var message = await consumer.ReceiveAsync(timeout.Token);
            seen.Add(message.Key!);
            await message.AckAsync();
        }

        Assert.Equal(keys.Count, seen.Count);
    }
}
