namespace Bus;

/// <summary>
/// Behaviours a backend may or may not provide. Declared by each backend in
/// <see cref="BackendCapabilities"/>; the conformance suite reports a case as unsupported, with the
/// backend's reason, exactly when the case needs a feature the backend does not declare.
/// </summary>
[Flags]
public enum BusFeatures : long
{
    /// <summary>No optional feature.</summary>
    None = 0,

    /// <summary>Messages of one key reach a single consumer in publish order.</summary>
    PerKeyOrdering = 1 << 0,

    /// <summary>Per-key order also holds when several consumers compete in one group.</summary>
    OrderedAcrossConsumers = 1 << 1,

    /// <summary>A nacked message is redelivered before any later message of its key is delivered.</summary>
    OrderedRetry = 1 << 2,

    /// <summary>The broker itself counts deliveries and moves messages to a dead-letter destination.</summary>
    NativeDeadLetter = 1 << 3,

    /// <summary>A new group can start from the earliest retained message.</summary>
    Replay = 1 << 4,

    /// <summary>A new group can start at a recorded <see cref="ReceivedMessage.Position"/>.</summary>
    ReplayFromPosition = 1 << 5,

    /// <summary>A new group can start at a point in time.</summary>
    ReplayFromTime = 1 << 6,

    /// <summary><see cref="OutgoingMessage.Delay"/> is honoured.</summary>
    DelayedDelivery = 1 << 7,

    /// <summary><see cref="IMessageBus.RequestAsync"/> works (natively or emulated by core: see the remark).</summary>
    RequestReply = 1 << 8,

    /// <summary>Different groups on one topic each receive every message.</summary>
    FanOutToGroups = 1 << 9,

    /// <summary>Confirmed messages survive a broker restart.</summary>
    Persistence = 1 << 10,

    /// <summary><see cref="ReceivedMessage.DeliveryCount"/> is exact (not only "first" or "redelivered").</summary>
    ExactDeliveryCount = 1 << 11,

    /// <summary>A message left unsettled by a consumer that died is redelivered to another consumer.</summary>
    RedeliveryOfAbandoned = 1 << 12,

    /// <summary>Ensuring an existing topic with conflicting options is detected and reported.</summary>
    TopicConflictDetection = 1 << 13,

    /// <summary>Competing consumers in one group share the messages (each message goes to one of them).</summary>
    CompetingConsumers = 1 << 14,

    /// <summary>A nack may ask for redelivery after a delay.</summary>
    DelayedNack = 1 << 15,

    /// <summary>The backend is a broker reached over the network (so it can be unreachable), not embedded.</summary>
    RemoteBroker = 1 << 16,

    /// <summary>
    /// A message that a live consumer keeps unsettled for longer than <see cref="SubscriptionOptions.AckTimeout"/> is
    /// delivered again (a lease per delivery). Without it, a message stays with a consumer that hangs but keeps its
    /// connection, until that consumer closes or the broker's own consumer-level limits end it.
    /// </summary>
    AckTimeoutRedelivery = 1 << 17,

    /// <summary>
    /// The delivery count is kept by the broker (or the embedded backend), not by the consumer's process: a message
    /// delivered again to another process, after a crash, counts its earlier deliveries. So a message that crashes every
    /// consumer taking it is dead-lettered after <see cref="SubscriptionOptions.MaxDeliveries"/>. The count may still be
    /// approximate (see <see cref="ExactDeliveryCount"/>).
    /// </summary>
    SharedDeliveryCount = 1 << 18,
}
