using Bus.Transport;

namespace Bus.Memory;

/// <summary>The in-memory transport: thin; the semantics live in <see cref="MemoryTopic"/> and <see cref="MemoryGroup"/>.</summary>
internal sealed class MemoryTransport(MemoryBroker broker, BackendCapabilities capabilities, bool ownsBroker) : MessageTransport
{
    public const int DefaultMaxMessageSize = 4 * 1024 * 1024;

    public override BackendCapabilities Capabilities { get; } = capabilities;

    public override ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        broker.Ensure(topic);
        return default;
    }

    public override ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        broker.Delete(topic.Name);
        return default;
    }

    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        broker.Topic(topic).Publish(message);
        return default;
    }

    public override ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, CancellationToken cancellationToken)
    {
        broker.Topic(topic).PublishBatch(messages);
        return default;
    }

    public override ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
        => new(broker.Topic(topic).Join(options));

    public override ValueTask DisposeAsync()
    {
        if (ownsBroker)
        {
            broker.Dispose();
        }

        return base.DisposeAsync();
    }
}
