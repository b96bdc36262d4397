using Bus.Transport;
using RabbitMQ.Client;

namespace Bus.RabbitMq.Internal;

/// <summary>Receiving: one channel per receiver, prefetch = MaxInFlight, manual acknowledgements.</summary>
internal sealed partial class RabbitMqTransport
{
    public override async ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
    {
        var deadLetterTopic = options.DeadLetterTopic ?? GetDeadLetterTopic(topic);
        await DeclareGroupAsync(topic, options.Group, options.MaxDeliveries, deadLetterTopic, cancellationToken).ConfigureAwait(false);
        var queue = QueueName(topic, options.Group);
        var connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        IChannel? channel = null;
        try
        {
            channel = await connection.CreateChannelAsync(new CreateChannelOptions(false, false, consumerDispatchConcurrency: 1), cancellationToken).ConfigureAwait(false);
            await channel.BasicQosAsync(0, (ushort)Math.Min(options.MaxInFlight, ushort.MaxValue), global: false, cancellationToken).ConfigureAwait(false);
            var receiver = new RabbitMqReceiver(channel, connection, topic, queue, options.PerKeyOrdering, _redeliveries.For(options.Group, topic), _closer, _logger);
            await receiver.StartAsync(options.ConsumerName, cancellationToken).ConfigureAwait(false);
            Log.ConsumerOpened(_logger, receiver.ConsumerTag, queue, options.MaxInFlight);
            return receiver;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            if (channel is not null)
            {
                await _closer.CloseAsync(channel, null, $"a consumer channel on queue {queue}").ConfigureAwait(false);
            }

            throw Failure(ex, $"open a consumer for group '{options.Group}'", topic);
        }
    }
}
