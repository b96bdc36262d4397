using System.Runtime.CompilerServices;

namespace Bus;

/// <summary>Conveniences over <see cref="IMessageBus"/>.</summary>
public static class MessageBusExtensions
{
    /// <summary>
    /// Consumes as a lazy stream: the consumer joins the group when enumeration starts and leaves when it ends.
    /// Arguments are checked at once. Settle each message; unsettled ones are released when enumeration ends.
    /// </summary>
    /// <param name="bus">The bus.</param>
    /// <param name="topic">The topic.</param>
    /// <param name="options">The group and its settings.</param>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    public static IAsyncEnumerable<ReceivedMessage> ConsumeAsync(this IMessageBus bus, string topic, SubscriptionOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(topic);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate(bus.Backend, topic);
        return Consume(bus, topic, options.Clone(), cancellationToken);

        static async IAsyncEnumerable<ReceivedMessage> Consume(IMessageBus bus, string topic, SubscriptionOptions options, [EnumeratorCancellation] CancellationToken cancellationToken)
        {
            var consumer = await bus.CreateConsumerAsync(topic, options, cancellationToken).ConfigureAwait(false);
            await using (consumer.ConfigureAwait(false))
            {
                await foreach (var message in consumer.ReadAllAsync(cancellationToken).ConfigureAwait(false))
                {
                    yield return message;
                }
            }
        }
    }

    /// <summary>Subscribes with a handler that needs no cancellation token.</summary>
    /// <param name="bus">The bus.</param>
    /// <param name="topic">The topic.</param>
    /// <param name="group">The consumer group.</param>
    /// <param name="handler">The handler.</param>
    /// <param name="cancellationToken">Cancels subscribing.</param>
    public static ValueTask<ISubscription> SubscribeAsync(this IMessageBus bus, string topic, string group, Func<ReceivedMessage, ValueTask> handler, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(handler);
        return bus.SubscribeAsync(topic, (message, _) => handler(message), SubscriptionOptions.ForGroup(group), cancellationToken);
    }

    /// <summary>Publishes a UTF-8 text message.</summary>
    /// <param name="bus">The bus.</param>
    /// <param name="topic">The topic.</param>
    /// <param name="text">The body text.</param>
    /// <param name="key">Optional ordering key.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    public static ValueTask PublishAsync(this IMessageBus bus, string topic, string text, string? key = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(bus);
        return bus.PublishAsync(topic, OutgoingMessage.FromText(text, key), cancellationToken);
    }

    /// <summary>Sends <paramref name="reply"/> to the request's reply topic with the request's correlation id.</summary>
    /// <param name="bus">The bus.</param>
    /// <param name="request">The request being answered.</param>
    /// <param name="reply">The reply.</param>
    /// <param name="cancellationToken">Cancels waiting.</param>
    /// <exception cref="InvalidOperationException">The request has no reply topic.</exception>
    public static ValueTask ReplyAsync(this IMessageBus bus, ReceivedMessage request, OutgoingMessage reply, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(bus);
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(reply);
        var replyTo = request.ReplyTo ?? throw new InvalidOperationException($"Message {request.MessageId} on topic '{request.Topic}' has no reply topic.");
        reply.CorrelationId = request.CorrelationId ?? request.MessageId;
        return bus.PublishAsync(replyTo, reply, cancellationToken);
    }
}
