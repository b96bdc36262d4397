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

    public override ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        // All or nothing: the batch is stored under the topic's lock.
        broker.Topic(topic).PublishBatch(messages);
        return default;
    }

    public override ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
        => new(broker.Topic(topic).Join(options));

    /// <summary>
    /// Dead-letters only a delivery that still holds its message: one that expired (its ack timeout passed) or was
    /// released belongs to a newer delivery, which decides the message's fate. Dead-lettered as well, the message would
    /// be both in the dead-letter topic and delivered again, as the ack that follows the copy would be ignored.
    /// </summary>
    public override ValueTask DeadLetterAsync(TransportReceiver receiver, ReceivedMessage message, string deadLetterTopic, OutgoingMessage copy, CancellationToken cancellationToken)
        => receiver is MemoryReceiver memory && !memory.Holds(message.DeliveryTag)
            ? default
            : base.DeadLetterAsync(receiver, message, deadLetterTopic, copy, cancellationToken);

    public override ValueTask DisposeAsync()
    {
        if (ownsBroker)
        {
            broker.Dispose();
        }

        return base.DisposeAsync();
    }
}
