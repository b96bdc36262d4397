namespace Bus;

/// <summary>How a <see cref="ReceivedMessage"/> was settled.</summary>
public enum SettlementState
{
    /// <summary>Not settled yet.</summary>
    Pending = 0,

    /// <summary>Acknowledged: done.</summary>
    Acked = 1,

    /// <summary>Returned for redelivery.</summary>
    Nacked = 2,

    /// <summary>Moved to the dead-letter topic.</summary>
    DeadLettered = 3,
}
