using System.Text;
using Bus.Conformance.Brokers;
using RabbitMQ.Client;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

[Collection(RabbitMqCollection.Name)]
public sealed class RabbitMqTests(RabbitMqBroker broker, ITestOutputHelper output) : BrokerSmokeTests(broker, output)
{
    protected override async Task RoundTripAsync(BrokerFixture fixture, string payload, CancellationToken cancellationToken)
    {
        var factory = new ConnectionFactory { Uri = fixture.ConnectionUri, RequestedConnectionTimeout = TimeSpan.FromSeconds(5) };
        await using var connection = await factory.CreateConnectionAsync(cancellationToken);
        await using var channel = await connection.CreateChannelAsync(
            new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
            cancellationToken);
        var queue = await channel.QueueDeclareAsync(string.Empty, durable: false, exclusive: true, autoDelete: true, cancellationToken: cancellationToken);

        // With confirmation tracking, the publish completes when the broker has confirmed the message.
        await channel.BasicPublishAsync(string.Empty, queue.QueueName, mandatory: true, new BasicProperties(), Encoding.UTF8.GetBytes(payload), cancellationToken);

        BasicGetResult? result;
        while ((result = await channel.BasicGetAsync(queue.QueueName, autoAck: false, cancellationToken)) is null)
        {
            await Task.Delay(20, cancellationToken);
        }

        Assert.Equal(payload, Encoding.UTF8.GetString(result.Body.Span));
        await channel.BasicAckAsync(result.DeliveryTag, multiple: false, cancellationToken);
        Assert.Equal(0u, await channel.MessageCountAsync(queue.QueueName, cancellationToken));
    }
}
