using System.Threading.Channels;
using Bus.Transport;

namespace Bus.Memory;

/// <summary>One consumer of an in-memory group. Its credit is the subscription's max in-flight (the prefetch).</summary>
internal sealed class MemoryReceiver : TransportReceiver
{
    private readonly MemoryTopic _topic;
    private readonly MemoryGroup _group;
    private readonly Channel<ReceivedMessage> _channel = Channel.CreateUnbounded<ReceivedMessage>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });
    private bool _closed;

    public MemoryReceiver(MemoryTopic topic, MemoryGroup group, SubscriptionOptions options)
    {
        _topic = topic;
        _group = group;
        Credit = options.MaxInFlight;
        AckTimeoutMs = (long)Math.Ceiling(options.AckTimeout.TotalMilliseconds);
    }

    public override ChannelReader<ReceivedMessage> Deliveries => _channel.Reader;

    /// <summary>How many more messages the group may hand this consumer. Under the topic's lock.</summary>
    public int Credit { get; set; }

    public long AckTimeoutMs { get; }

    /// <summary>Under the topic's lock.</summary>
    public void Deliver(Pending pending, long tag)
    {
        Credit--;
        var stored = pending.Message;
        _channel.Writer.TryWrite(new ReceivedMessage(
            _topic.Name, stored.Body, stored.Key, stored.Headers, stored.MessageId, stored.CorrelationId, stored.ContentType,
            stored.ReplyTo, pending.Deliveries, stored.Position, stored.Timestamp, tag));
    }

    public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        lock (_topic.Sync)
        {
            _group.Settle(message.DeliveryTag, this, redeliver: false, TimeSpan.Zero);
        }

        return default;
    }

    public override ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        lock (_topic.Sync)
        {
            _group.Settle(message.DeliveryTag, this, redeliver: true, delay);
        }

        return default;
    }

    public override ValueTask DisposeAsync()
    {
        lock (_topic.Sync)
        {
            if (_closed)
            {
                return default;
            }

            _closed = true;
            _group.RemoveConsumer(this);
        }

        // Buffered deliveries were in flight with this consumer and have just been released to the group.
        _channel.Writer.TryComplete();
        while (_channel.Reader.TryRead(out _))
        {
        }

        return default;
    }
}
