using Bus.Kafka.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bus.Kafka.Tests;

/// <summary>
/// A Kafka publish is bounded by librdkafka itself (message.timeout.ms, set from the bus's OperationTimeout), so core
/// starts no timer per publish call.
/// </summary>
public sealed class KafkaPublishTimeoutTests
{
    [Fact]
    public async Task A_publish_the_cluster_does_not_answer_fails_as_a_timeout_within_the_operation_timeout()
    {
        // A mock cluster of this test's own, frozen (docker pause or SIGSTOP) after a first publish has connected
        // the producer: the produce request goes out and is never answered. With librdkafka's defaults the record
        // was still waiting after 20 s (message.timeout.ms is 300 s), and core has no timer of its own here.
        await using var cluster = await KafkaTestCluster.StartAsync(ownMock: true);
        var topic = $"frozen-{Guid.NewGuid():N}"[..24];
        await using (var setUp = MessageBus.Create(Options(cluster, TimeSpan.FromSeconds(30))))
        {
            await setUp.EnsureTopicAsync(topic); // the mock auto-creates topics, which takes longer than 2 s
        }

        await using var bus = MessageBus.Create(Options(cluster, TimeSpan.FromSeconds(2)));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("before"));

        await cluster.PauseAsync();
        try
        {
            var publish = bus.PublishAsync(topic, OutgoingMessage.FromText("held")).AsTask();
            var first = await Task.WhenAny(publish, Task.Delay(TimeSpan.FromSeconds(20)));
            Assert.True(ReferenceEquals(first, publish), "the publish neither completed nor failed within 20 s of a 2 s operation timeout");
            var failure = await Assert.ThrowsAsync<BusException>(() => publish);
            Assert.Equal(BusFailureReason.Timeout, failure.Reason);
            Assert.Equal(topic, failure.Topic);
        }
        finally
        {
            await cluster.ResumeAsync();
        }
    }

    private static BusOptions Options(KafkaTestCluster cluster, TimeSpan operationTimeout)
    {
        var options = new BusOptions { Url = cluster.Url, OperationTimeout = operationTimeout };
        foreach (var (name, value) in KafkaFixture.TestSettings())
        {
            options.Settings[name] = value;
        }

        options.Settings["bootstrap.servers"] = cluster.BootstrapServers;
        return options;
    }

    [Theory]
    [InlineData(null, true)]
    [InlineData("producer.message.timeout.ms=1000", true)]
    [InlineData("producer.message.timeout.ms=300000", false)]
    [InlineData("producer.delivery.timeout.ms=300000", false)]
    [InlineData("producer.message.timeout.ms=0", false)]                                 // 0: librdkafka never gives up
    [InlineData("message.timeout.ms=1500&producer.delivery.timeout.ms=20000", false)]    // aliases: the producer's, applied last, wins
    [InlineData("delivery.timeout.ms=20000&producer.message.timeout.ms=1500", true)]
    [InlineData("producer.linger.ms=20000", false)]                                      // the timeout must stay above linger.ms
    [InlineData("producer.transactional.id=t1", false)]                                  // librdkafka ties it to transaction.timeout.ms
    public void Core_leaves_the_bound_to_librdkafka_only_where_its_timeouts_are_within_the_operation_timeout(string? query, bool bounded)
    {
        var options = new BusOptions { Url = "kafka://127.0.0.1:9092" + (query is null ? "" : "?" + query), OperationTimeout = TimeSpan.FromSeconds(10) };
        var context = new TransportContext(new Uri(options.Url), options, NullLoggerFactory.Instance);
        var transport = (KafkaTransport)new KafkaTransportFactory().Create(context);
        Assert.Equal(bounded, transport.BoundsPublishTime);
    }

    [Theory]
    [InlineData(null, 10_000)]
    [InlineData("producer.linger.ms=20000", 20_001)]
    [InlineData("producer.queue.buffering.max.ms=20000", 20_001)]
    [InlineData("producer.message.timeout.ms=5000", null)]
    public void The_producer_sets_the_operation_timeout_above_linger_unless_the_settings_name_one(string? query, int? expected)
    {
        var options = new BusOptions { Url = "kafka://127.0.0.1:9092" + (query is null ? "" : "?" + query), OperationTimeout = TimeSpan.FromSeconds(10) };
        var endpoint = KafkaEndpoint.Parse(new TransportContext(new Uri(options.Url), options, NullLoggerFactory.Instance));
        var producer = new Dictionary<string, string>(endpoint.Common);
        foreach (var (name, value) in endpoint.Producer)
        {
            producer[name] = value;
        }

        Assert.Equal(expected, KafkaTransport.PublishTimeout(producer, options.OperationTimeout).MessageTimeoutMs);
    }
}
