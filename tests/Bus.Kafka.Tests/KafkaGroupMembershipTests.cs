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
        // The ack timeout bounds how long the rebalance below waits for the held message (a revocation waits for the
        // messages handed out from its partitions): it is held on purpose until the second member has joined.
        await using var first = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, MaxInFlight = 1, PerKeyOrdering = false, AckTimeout = TimeSpan.FromSeconds(1) });
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
        // Far shorter than a group join takes on the mock cluster (about 3 s): with 1.5 s, a test process starved of CPU
        // could see the join end before its timeout fired. The topic was ensured through the other bus.
        hurriedOptions.OperationTimeout = TimeSpan.FromMilliseconds(500);
        await using var hurried = MessageBus.Create(hurriedOptions);
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

    /// <summary>
    /// Handlers still at work when a second member joins the group. The revocation that the join causes used to return
    /// at once, leaving their messages uncommitted, so the partitions' next owners (the new member, or this one again)
    /// fetched them from the last commit and handled them while the first handlers were still running: two handlers of
    /// one key at once. The revocation now waits for them, up to the subscription's ack timeout.
    /// </summary>
    [Fact]
    public async Task A_rebalance_waits_for_the_handlers_of_revoked_partitions_up_to_the_ack_timeout()
    {
        var topic = NewTopic("revoke-wait");
        var group = "g-" + topic;
        var options = cluster.CreateOptions();
        options.OperationTimeout = TimeSpan.FromSeconds(30); // the second member's join waits for the slow handlers
        await using var bus = MessageBus.Create(options);
        await bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 4 });
        var handling = new HandlingLog();
        var subscription = new SubscriptionOptions { Group = group, MaxInFlight = 64, AckTimeout = TimeSpan.FromSeconds(20) };
        await using var first = await bus.SubscribeAsync(topic, (message, ct) => new ValueTask(handling.HandleAsync("first", message)), subscription);

        var keys = Enumerable.Range(0, 32).Select(i => $"k{i}").ToList(); // spread over the four partitions
        await bus.PublishBatchAsync(topic, keys.Select(k => OutgoingMessage.FromText("slow", k)).ToList());
        await handling.WaitForStartsAsync(keys.Count, TimeSpan.FromSeconds(20));

        // Joins while every handler of the first member is in its 8 s.
        await using var otherBus = MessageBus.Create(options);
        var joining = System.Diagnostics.Stopwatch.StartNew();
        await using var second = await otherBus.SubscribeAsync(topic, (message, ct) => new ValueTask(handling.HandleAsync("second", message)), subscription);
        output.WriteLine($"the second member joined in {joining.Elapsed.TotalSeconds:0.0} s");

        await handling.WaitForEndsAsync(keys.Count, TimeSpan.FromSeconds(30));
        await Task.Delay(TimeSpan.FromSeconds(3)); // replays from the last commit, if any, are handled meanwhile
        foreach (var line in handling.Lines)
        {
            output.WriteLine(line);
        }

        Assert.Empty(handling.Overlaps);
        Assert.Equal(keys.Count, handling.Lines.Count(l => l.Contains("slow", StringComparison.Ordinal)));
    }

    /// <summary>Handler runs per key: the first run of each message takes 8 s, a replay none; two runs of one key at once are noted.</summary>
    private sealed class HandlingLog
    {
        private readonly object _sync = new();
        private readonly Dictionary<string, int> _running = [];
        private readonly HashSet<string> _seen = [];
        private readonly List<string> _lines = [];
        private readonly List<string> _overlaps = [];
        private int _starts;
        private int _ends;

        public IReadOnlyList<string> Lines { get { lock (_sync) { return [.. _lines]; } } }

        public IReadOnlyList<string> Overlaps { get { lock (_sync) { return [.. _overlaps]; } } }

        public async Task HandleAsync(string member, ReceivedMessage message)
        {
            var key = message.Key!;
            bool slow;
            lock (_sync)
            {
                var running = _running.GetValueOrDefault(key);
                if (running > 0)
                {
                    _overlaps.Add($"{key}: {member} started while another handler of it was running");
                }

                _running[key] = running + 1;
                slow = _seen.Add(message.MessageId);
                _lines.Add($"{DateTime.UtcNow:HH:mm:ss.fff} {member} {key} delivery {message.DeliveryCount}{(slow ? " slow" : " replay")}");
                _starts++;
            }

            if (slow)
            {
                await Task.Delay(TimeSpan.FromSeconds(8));
            }

            lock (_sync)
            {
                _running[key]--;
                if (slow)
                {
                    _ends++;
                }
            }
        }

        public Task WaitForStartsAsync(int count, TimeSpan timeout) => WaitAsync(() => _starts >= count, timeout, $"{count} handler starts");

        public Task WaitForEndsAsync(int count, TimeSpan timeout) => WaitAsync(() => _ends >= count, timeout, $"{count} slow handlers ending");

        private async Task WaitAsync(Func<bool> done, TimeSpan timeout, string what)
        {
            var deadline = DateTime.UtcNow + timeout;
            while (true)
            {
                lock (_sync)
                {
                    if (done())
                    {
                        return;
                    }
                }

                Assert.True(DateTime.UtcNow < deadline, $"no {what} within {timeout.TotalSeconds} s: {string.Join("; ", Lines)}");
                await Task.Delay(50);
            }
        }
    }
}
