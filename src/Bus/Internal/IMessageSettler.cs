namespace Bus.Internal;

/// <summary>Where a <see cref="ReceivedMessage"/> sends its settlement: the consumer that handed it out.</summary>
internal interface IMessageSettler
{
    ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken);

    ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken);

    ValueTask DeadLetterAsync(ReceivedMessage message, string reason, string? description, CancellationToken cancellationToken);
}
