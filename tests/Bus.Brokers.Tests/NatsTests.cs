using Bus.Conformance.Brokers;
using NATS.Client.Core;
using NATS.Client.JetStream;
using NATS.Client.JetStream.Models;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

[Collection(NatsCollection.Name)]
public sealed class NatsTests(NatsBroker broker, ITestOutputHelper output) : BrokerSmokeTests(broker, output)
{
    protected override async Task RoundTripAsync(BrokerFixture fixture, string payload, CancellationToken cancellationToken)
    {
        await using var nats = new NatsConnection(new NatsOpts
        {
            Url = fixture.ConnectionUri.ToString(),
            ConnectTimeout = TimeSpan.FromSeconds(5),
            RequestTimeout = TimeSpan.FromSeconds(5),
        });
        await nats.ConnectAsync().AsTask().WaitAsync(cancellationToken);
        var js = new NatsJSContext(nats);
        var stream = $"BUS_SMOKE_{Guid.NewGuid():N}";
        try
        {
            await js.CreateStreamAsync(new StreamConfig(stream, [$"{stream}.>"]), cancellationToken);
            var ack = await js.PublishAsync($"{stream}.orders", payload, cancellationToken: cancellationToken);
            ack.EnsureSuccess();

            var consumer = await js.CreateOrUpdateConsumerAsync(
                stream,
                new ConsumerConfig("durable") { AckPolicy = ConsumerConfigAckPolicy.Explicit },
                cancellationToken);
            var received = new List<string?>();
            await foreach (var message in consumer.FetchAsync<string>(new NatsJSFetchOpts { MaxMsgs = 1, Expires = TimeSpan.FromSeconds(5) }, cancellationToken: cancellationToken))
            {
                received.Add(message.Data);
                // Double ack: wait until the server has recorded the ack, so the ack floor below is settled.
                await message.AckAsync(new AckOpts { DoubleAck = true }, cancellationToken);
            }

            Assert.Equal(payload, Assert.Single(received));
            var info = await js.GetConsumerAsync(stream, "durable", cancellationToken);
            Assert.Equal(1ul, info.Info.AckFloor.StreamSeq);
        }
        finally
        {
            if (nats.ConnectionState == NatsConnectionState.Open)
            {
                await js.DeleteStreamAsync(stream, CancellationToken.None);
            }
        }
    }
}
