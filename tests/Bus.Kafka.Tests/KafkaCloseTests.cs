using Xunit;
using Xunit.Abstractions;

namespace Bus.Kafka.Tests;

/// <summary>
/// How a consumer leaves its group. librdkafka aborts the process (<c>rd_kafka_cgrp_terminated: assert:
/// !rd_kafka_assignment_in_progress</c>, confluentinc/librdkafka#4792), or never returns from a call, when a rebalance
/// callback is still to be served once <c>Close()</c> has started: the receiver serves its revocation before it closes.
/// </summary>
public sealed class KafkaCloseTests(KafkaClusterFixture cluster, ITestOutputHelper output) : IClassFixture<KafkaClusterFixture>
{
    [Fact]
    public async Task A_closing_consumer_serves_its_revocation_before_librdkafka_closes()
    {
        var topic = $"it-leave-{Guid.NewGuid():N}"[..30];
        var group = "g-" + topic;
        var logs = new CapturingLoggerFactory();
        var options = cluster.CreateOptions();
        options.Settings["consumer.debug"] = "consumer,cgrp"; // librdkafka's "Closing consumer" marks where Close() starts
        await using var bus = MessageBus.Create(options, logs);
        await bus.EnsureTopicAsync(topic);
        var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, StartPosition = StartPosition.Earliest });
        await consumer.DisposeAsync();

        var events = logs.Events.ToList();
        var revoked = events.FindIndex(e => e.Id == 4007 && e.Text.Contains(group, StringComparison.Ordinal));
        var closing = events.FindIndex(e => e.Id == 4001 && e.Text.Contains("[CLOSE]", StringComparison.Ordinal) && e.Text.Contains("Closing consumer", StringComparison.Ordinal));
        output.WriteLine($"revoked at event {revoked}, librdkafka's close at event {closing} of {events.Count}");
        Assert.True(revoked >= 0, "the consumer's partitions were never revoked");
        Assert.True(closing >= 0, "librdkafka's close was not logged");
        Assert.True(revoked < closing, "the revocation was served inside Close(), where librdkafka no longer waits for it");
        Assert.DoesNotContain(events, e => e.Id == 4016); // no close ran out of time
    }

    /// <summary>
    /// The reproducer (<see cref="KafkaCloseStress"/>), opt-in because it takes minutes and is timing-dependent:
    /// <c>BUS_KAFKA_STRESS=rounds</c> (and optionally <c>BUS_KAFKA_STRESS_MODE</c>: bus, bus-pair, raw, raw-handlers,
    /// revoke-race, revoke-race-plain, revoke-race-leave-first; default bus-pair).
    /// </summary>
    [StressFact]
    public async Task Consumers_closing_at_awkward_moments_neither_abort_nor_hang()
    {
        var rounds = int.Parse(Environment.GetEnvironmentVariable("BUS_KAFKA_STRESS")!, System.Globalization.CultureInfo.InvariantCulture);
        var mode = Environment.GetEnvironmentVariable("BUS_KAFKA_STRESS_MODE") is { Length: > 0 } named ? named : "bus-pair";
        using var progress = new StringWriter();
        var summary = await KafkaCloseStress.RunAsync(new KafkaCloseStress.Options(mode, rounds, 10, 1, cluster.BootstrapServers, 0, false), progress);
        output.WriteLine(progress.ToString());
        output.WriteLine(summary.ToString());
        Assert.True(summary.Aborts + summary.Hangs + summary.OtherFailures + summary.Lost == 0, $"{summary}\n{summary.FirstAbortLog}");
    }

    /// <summary>A fact that runs only when <c>BUS_KAFKA_STRESS</c> names a number of rounds.</summary>
    private sealed class StressFactAttribute : FactAttribute
    {
        public StressFactAttribute()
        {
            if (!int.TryParse(Environment.GetEnvironmentVariable("BUS_KAFKA_STRESS"), out var rounds) || rounds <= 0)
            {
                Skip = "opt-in: set BUS_KAFKA_STRESS=<rounds> (minutes long, timing-dependent)";
            }
        }
    }
}
