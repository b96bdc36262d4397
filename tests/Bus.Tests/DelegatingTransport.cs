using Bus.Memory;
using Bus.Transport;

namespace Bus.Tests;

/// <summary>A transport that hands every call to another (memory://), for tests that change one behaviour of it.</summary>
internal abstract class DelegatingTransport(MessageTransport inner) : MessageTransport
{
    public override BackendCapabilities Capabilities => inner.Capabilities;

    public override bool BoundsPublishTime => inner.BoundsPublishTime;

    public override ValueTask ConnectAsync(CancellationToken cancellationToken) => inner.ConnectAsync(cancellationToken);

    public override void RegisterPrivateTopic(string topic) => inner.RegisterPrivateTopic(topic);

    public override string? ValidateTopicName(string topic) => inner.ValidateTopicName(topic);

    public override string GetDeadLetterTopic(string topic) => inner.GetDeadLetterTopic(topic);

    public override long MeasureMessage(OutgoingMessage message) => inner.MeasureMessage(message);

    public override ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken) => inner.EnsureTopicAsync(topic, cancellationToken);

    public override ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken) => inner.DeleteTopicAsync(topic, cancellationToken);

    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken) => inner.PublishAsync(topic, message, cancellationToken);

    public override ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
        => UsesDefaultBatch
            ? base.PublishBatchAsync(topic, messages, confirmations, cancellationToken)
            : inner.PublishBatchAsync(topic, messages, confirmations, cancellationToken);

    /// <summary>True: publish batches with <see cref="MessageTransport"/>'s default (one publish of this transport per message), not the inner transport's.</summary>
    protected virtual bool UsesDefaultBatch => false;

    public override ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken) => inner.OpenReceiverAsync(topic, options, cancellationToken);

    public override ValueTask DeadLetterAsync(TransportReceiver receiver, ReceivedMessage message, string deadLetterTopic, OutgoingMessage copy, CancellationToken cancellationToken)
        => UsesDefaultDeadLetter
            ? base.DeadLetterAsync(receiver, message, deadLetterTopic, copy, cancellationToken)
            : inner.DeadLetterAsync(receiver, message, deadLetterTopic, copy, cancellationToken);

    /// <summary>True: dead-letter with <see cref="MessageTransport"/>'s default (through this transport's publish), not the inner transport's.</summary>
    protected virtual bool UsesDefaultDeadLetter => false;

    public override ValueTask DisposeAsync() => inner.DisposeAsync();
}

/// <summary>A factory registering a <see cref="DelegatingTransport"/> over memory:// under a scheme of its own.</summary>
internal sealed class DelegatingFactory(string scheme, Func<MessageTransport, MessageTransport> wrap) : IBusTransportFactory
{
    private readonly MemoryTransportFactory _memory = new();

    public string Backend => "memory";

    public IReadOnlyList<string> Schemes { get; } = [scheme];

    public BackendCapabilities Capabilities => _memory.Capabilities;

    public MessageTransport Create(TransportContext context) => wrap(_memory.Create(context));
}
