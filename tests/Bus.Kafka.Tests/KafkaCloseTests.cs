using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Kafka.Tests;

/// <summary>
/// How a consumer leaves its group. librdkafka aborts the process (<c>rd_kafka_cgrp_terminated: assert:
/// !rd_kafka_assignment_in_progress</c>, confluentinc/librdkafka#4792), or never returns from a call, when a rebalance
/// callback is still to be served once <c>Close()</c> has started: the receiver serves its revocation before it closes.
/// The reproducer that measured it takes minutes and is timing-dependent, so it is a command of this assembly rather
/// than a test: <c>dotnet Bus.Kafka.Tests.dll stress --mode bus-pair --rounds 20</c> (see <see cref="KafkaCloseStress"/>).
/// </summary>
public sealed class KafkaCloseTests(KafkaClusterFixture cluster, ITestOutputHelper output) : IClassFixture<KafkaClusterFixture>
{
    [Fact]
    public async Task A_closing_consumer_serves_its_revocation_before_librdkafka_closes()
    {
        var topic = $"it-leave-{Guid.NewGuid():N}"[..30];
        var group = "g-" + topic;
        using var logs = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.SetMinimumLevel(LogLevel.Trace).AddProvider(logs));
        var options = cluster.CreateOptions();
        options.Settings["consumer.debug"] = "consumer,cgrp"; // librdkafka's "Closing consumer" marks where Close() starts
        await using var bus = MessageBus.Create(options, loggerFactory);
        await bus.EnsureTopicAsync(topic);
        var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = group, StartPosition = StartPosition.Earliest });
        await consumer.DisposeAsync();

        var events = logs.Collector.GetSnapshot().ToList();
        var revoked = events.FindIndex(e => e.Id.Id == 4007 && e.Message.Contains(group, StringComparison.Ordinal));
        var closing = events.FindIndex(e => e.Id.Id == 4001 && e.Message.Contains("[CLOSE]", StringComparison.Ordinal) && e.Message.Contains("Closing consumer", StringComparison.Ordinal));
        output.WriteLine($"revoked at event {revoked}, librdkafka's close at event {closing} of {events.Count}");
        Assert.True(revoked >= 0, "the consumer's partitions were never revoked");
        Assert.True(closing >= 0, "librdkafka's close was not logged");
        Assert.True(revoked < closing, "the revocation was served inside Close(), where librdkafka no longer waits for it");
        Assert.DoesNotContain(events, e => e.Id.Id == 4016); // no close ran out of time
    }
}
