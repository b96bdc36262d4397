namespace Bus.RabbitMq.Internal;

/// <summary>The kind of queue a group is declared as.</summary>
internal enum RabbitMqQueueType
{
    /// <summary>Replicated, durable; counts deliveries and dead-letters at least once.</summary>
    Quorum,

    /// <summary>The classic queue: durable, no delivery count.</summary>
    Classic,
}
