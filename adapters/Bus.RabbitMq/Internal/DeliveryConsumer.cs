using RabbitMQ.Client;

namespace Bus.RabbitMq.Internal;

/// <summary>Hands the broker's deliveries and cancellations on one channel to its <see cref="RabbitMqReceiver"/>.</summary>
internal sealed class DeliveryConsumer(IChannel channel, RabbitMqReceiver receiver) : AsyncDefaultBasicConsumer(channel)
{
    public override Task HandleBasicDeliverAsync(string consumerTag, ulong deliveryTag, bool redelivered, string exchange, string routingKey, IReadOnlyBasicProperties properties, ReadOnlyMemory<byte> body, CancellationToken cancellationToken = default)
    {
        receiver.Deliver(deliveryTag, redelivered, properties, body);
        return Task.CompletedTask;
    }

    /// <summary>
    /// The broker cancelled the consumer (its queue was deleted, say). Not called for a channel that closes with a lost
    /// connection: automatic recovery re-registers the consumer then, so the receiver lives on.
    /// </summary>
    public override async Task HandleBasicCancelAsync(string consumerTag, CancellationToken cancellationToken = default)
    {
        await base.HandleBasicCancelAsync(consumerTag, cancellationToken).ConfigureAwait(false);
        receiver.CancelledByBroker();
    }
}
