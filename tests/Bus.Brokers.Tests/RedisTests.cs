using Bus.Conformance.Brokers;
using StackExchange.Redis;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

[Collection(RedisCollection.Name)]
public sealed class RedisTests(RedisBroker broker, ITestOutputHelper output) : BrokerSmokeTests(broker, output)
{
    protected override async Task RoundTripAsync(BrokerFixture fixture, string payload, CancellationToken cancellationToken)
    {
        var uri = fixture.ConnectionUri;
        var options = new ConfigurationOptions { EndPoints = { { uri.Host, uri.Port } }, ConnectTimeout = 5000, SyncTimeout = 5000, AsyncTimeout = 5000 };
        await using var redis = await ConnectionMultiplexer.ConnectAsync(options).WaitAsync(cancellationToken);
        var db = redis.GetDatabase();
        var stream = $"bus-smoke-{Guid.NewGuid():N}";
        try
        {
            var id = await db.StreamAddAsync(stream, "payload", payload).WaitAsync(cancellationToken);
            Assert.True(await db.StreamCreateConsumerGroupAsync(stream, "group", StreamPosition.Beginning).WaitAsync(cancellationToken));

            var entries = await db.StreamReadGroupAsync(stream, "group", "consumer", ">", count: 10).WaitAsync(cancellationToken);
            var entry = Assert.Single(entries);
            Assert.Equal(id, entry.Id);
            Assert.Equal(payload, (string?)entry["payload"]);

            Assert.Equal(1, await db.StreamAcknowledgeAsync(stream, "group", entry.Id).WaitAsync(cancellationToken));
            var pending = await db.StreamPendingAsync(stream, "group").WaitAsync(cancellationToken);
            Assert.Equal(0, pending.PendingMessageCount);
        }
        finally
        {
            if (redis.IsConnected)
            {
                await db.KeyDeleteAsync(stream);
            }
        }
    }
}
