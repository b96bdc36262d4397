using System.Threading.Channels;
using Bus.Transport;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Bus.RabbitMq.Internal;

/// <summary>
/// One consumer on a group's queue, on a channel of its own. Closing the channel returns every unacknowledged
/// delivery (handed out or buffered) to the queue, where the broker counts it and gives it to the next consumer.
/// </summary>
internal sealed class RabbitMqReceiver : TransportReceiver
{
    private readonly IChannel _channel;
    private readonly IConnection _connection;
    private readonly string _topic;
    private readonly string _queue;
    private readonly ILogger _logger;
    private readonly ChannelCloser _closer;
    private readonly Channel<ReceivedMessage> _deliveries = Channel.CreateUnbounded<ReceivedMessage>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = true });
    private readonly CancellationTokenSource _closing = new();
    private readonly KeyGate? _gate;
    private readonly DeliveryCounts<string>.Scope _redeliveries;
    private int _closed;

    public RabbitMqReceiver(IChannel channel, IConnection connection, string topic, string queue, bool perKeyOrdering, DeliveryCounts<string>.Scope redeliveries, ChannelCloser closer, ILogger logger)
    {
        _redeliveries = redeliveries;
        _closer = closer;
        _gate = perKeyOrdering ? new KeyGate(m => _deliveries.Writer.TryWrite(m)) : null;
        _channel = channel;
        _connection = connection;
        _topic = topic;
        _queue = queue;
        _logger = logger;
        _channel.ChannelShutdownAsync += OnChannelShutdownAsync;
    }

    public string ConsumerTag { get; private set; } = "";

    public override ChannelReader<ReceivedMessage> Deliveries => _deliveries.Reader;

    private bool Closed => Volatile.Read(ref _closed) != 0;

    public async Task StartAsync(string? consumerName, CancellationToken cancellationToken)
    {
        var consumer = new DeliveryConsumer(_channel, this);
        ConsumerTag = await _channel.BasicConsumeAsync(_queue, autoAck: false, consumerTag: consumerName is null ? "" : $"{consumerName}-{Guid.NewGuid():N}", noLocal: false, exclusive: false, arguments: null, consumer, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Called on the channel's dispatch loop, one delivery at a time, in queue order.</summary>
    public void Deliver(ulong deliveryTag, bool redelivered, IReadOnlyBasicProperties properties, ReadOnlyMemory<byte> body)
    {
        if (Closed)
        {
            return; // Unacknowledged: returned to the queue when the channel closes.
        }

        var message = MessageMapping.FromDelivery(_topic, body, properties, deliveryTag, redelivered, _redeliveries, this);
        if (_gate is null)
        {
            _deliveries.Writer.TryWrite(message);
        }
        else
        {
            _gate.Offer(message);
        }
    }

    public void CancelledByBroker()
    {
        if (!Closed)
        {
            Log.ConsumerCancelledByBroker(_logger, _queue);
            _deliveries.Writer.TryComplete(new BusException($"rabbitmq: the broker cancelled the consumer on queue '{_queue}' (was the queue deleted?)", BusFailureReason.BrokerError, RabbitMqEndpoint.BackendName, _topic, isTransient: false));
        }
    }

    public override async ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (Closed || !_channel.IsOpen)
        {
            Log.SettlementIgnored(_logger, (ulong)message.DeliveryTag, _queue);
            return;
        }

        try
        {
            await _channel.BasicAckAsync((ulong)message.DeliveryTag, multiple: false, cancellationToken).ConfigureAwait(false);
        }
        catch (AlreadyClosedException)
        {
            Log.SettlementIgnored(_logger, (ulong)message.DeliveryTag, _queue);
            return;
        }

        if (message.DeliveryCount > 1)
        {
            _redeliveries.Done(message.MessageId); // counted here if the queue did not count it (a no-op otherwise)
        }

        _gate?.Settled(message);
    }

    public override async ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        if (Closed || !_channel.IsOpen)
        {
            Log.SettlementIgnored(_logger, (ulong)message.DeliveryTag, _queue);
            return;
        }

        _gate?.Returning(message);
        if (delay > TimeSpan.Zero)
        {
            // Emulated: hold the delivery for the delay, then return it. The broker keeps it unacknowledged meanwhile.
            _ = NackLaterAsync(message, delay);
            return;
        }

        if (_gate is not null)
        {
            // Started first, so that a failed nack cannot leave the key held for good.
            _ = WatchReturnAsync(message);
        }

        await NackNowAsync((ulong)message.DeliveryTag, cancellationToken).ConfigureAwait(false);
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        await _closing.CancelAsync().ConfigureAwait(false);
        _channel.ChannelShutdownAsync -= OnChannelShutdownAsync;
        await _closer.CloseAsync(_channel, ConsumerTag, $"the consumer on queue {_queue}").ConfigureAwait(false);
        _gate?.Clear();
        _closing.Dispose();
        Log.ConsumerClosed(_logger, ConsumerTag, _queue);
        _deliveries.Writer.TryComplete();
        while (_deliveries.Reader.TryRead(out _))
        {
        }
    }

    private async Task NackLaterAsync(ReceivedMessage message, TimeSpan delay)
    {
        var deliveryTag = (ulong)message.DeliveryTag;
        try
        {
            await Task.Delay(delay, _closing.Token).ConfigureAwait(false);
            if (_gate is not null)
            {
                _ = WatchReturnAsync(message);
            }

            await NackNowAsync(deliveryTag, CancellationToken.None).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            // Closed meanwhile: the broker has requeued the delivery.
        }
        catch (ObjectDisposedException)
        {
        }
        catch (Exception ex)
        {
            Log.DelayedNackFailed(_logger, deliveryTag, _queue, ex);
        }
    }

    private async Task WatchReturnAsync(ReceivedMessage message)
    {
        try
        {
            await _gate!.ReleaseIfNotBackAsync(message, _closing.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        catch (ObjectDisposedException)
        {
        }
    }

    private async Task NackNowAsync(ulong deliveryTag, CancellationToken cancellationToken)
    {
        if (Closed || !_channel.IsOpen)
        {
            return;
        }

        try
        {
            // basic.reject, not basic.nack: from RabbitMQ 4.3 only a reject counts as a failed delivery in the queue's
            // x-delivery-count (a nack is "returned, not failed" there), and a Bus nack is a failed attempt. Before 4.3
            // both count (rabbitmq-server#15387).
            await _channel.BasicRejectAsync(deliveryTag, requeue: true, cancellationToken).ConfigureAwait(false);
        }
        catch (AlreadyClosedException)
        {
            Log.SettlementIgnored(_logger, deliveryTag, _queue);
        }
    }

    private Task OnChannelShutdownAsync(object sender, ShutdownEventArgs reason)
    {
        // The broker requeues every unacknowledged delivery, those held behind their keys included, and delivers them
        // again once the channel recovers: their keys start afresh. (An ack or nack of a delivery from before, which
        // the client drops, must not leave its key waiting for good.)
        _gate?.Clear();

        // A closed connection recovers (and this channel and consumer with it); a channel the broker closed on its own does not.
        if (!Closed && reason.Initiator == ShutdownInitiator.Peer && _connection.IsOpen)
        {
            _deliveries.Writer.TryComplete(new BusException(
                $"rabbitmq: the broker closed the consumer's channel on queue '{_queue}' ({reason.ReplyCode} {reason.ReplyText})",
                BusFailureReason.BrokerError, RabbitMqEndpoint.BackendName, _topic, isTransient: true));
        }

        return Task.CompletedTask;
    }
}
