namespace Bus;

/// <summary>
/// A batch publish that failed after the bus had validated it (a backend failure, refusal or timeout): the messages in
/// <see cref="UnconfirmedMessages"/> were not confirmed by the backend (all of them when it failed before sending), and
/// every other message of the batch was confirmed as <see cref="IMessageBus.PublishAsync"/> confirms one. An
/// unconfirmed message may still have been stored (its confirmation was lost, or came after the call gave up), so
/// publishing <see cref="UnconfirmedMessages"/> again is at-least-once: they keep their message ids, by which consumers
/// can tell the copies. Publishing them again can also put a message after a later one of its key that was confirmed.
/// <see cref="Exception.InnerException"/> is the failure as the backend reported it; <see cref="BusException.Reason"/>
/// and <see cref="BusException.IsTransient"/> are its.
/// </summary>
public sealed class PublishBatchException : BusException
{
    /// <summary>Creates the exception for a batch whose publish failed with <paramref name="failure"/>.</summary>
    /// <param name="failure">The backend's failure.</param>
    /// <param name="topic">The batch's topic (where <paramref name="failure"/> names none).</param>
    /// <param name="batchSize">How many messages the batch had.</param>
    /// <param name="unconfirmed">The caller's messages that were not confirmed, in batch order.</param>
    public PublishBatchException(BusException failure, string topic, int batchSize, IReadOnlyList<OutgoingMessage> unconfirmed)
        : base(Describe(failure, batchSize, unconfirmed), failure.Reason, failure.Backend, failure.Topic ?? topic, failure.IsTransient, failure)
    {
        BatchSize = batchSize;
        UnconfirmedMessages = unconfirmed;
    }

    /// <summary>How many messages the batch had.</summary>
    public int BatchSize { get; }

    /// <summary>How many messages of the batch the backend confirmed.</summary>
    public int ConfirmedCount => BatchSize - UnconfirmedMessages.Count;

    /// <summary>The caller's messages that the backend did not confirm, in batch order: publish these again.</summary>
    public IReadOnlyList<OutgoingMessage> UnconfirmedMessages { get; }

    private static string Describe(BusException failure, int batchSize, IReadOnlyList<OutgoingMessage> unconfirmed)
    {
        ArgumentNullException.ThrowIfNull(failure);
        ArgumentNullException.ThrowIfNull(unconfirmed);
        return $"{failure.Message} ({batchSize - unconfirmed.Count} of the batch's {batchSize} messages were confirmed; the other {unconfirmed.Count} are in {nameof(UnconfirmedMessages)})";
    }
}
