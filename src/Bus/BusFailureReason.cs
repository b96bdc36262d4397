namespace Bus;

/// <summary>Why a <see cref="BusException"/> was thrown.</summary>
public enum BusFailureReason
{
    /// <summary>Something the broker or its client reported that fits no other reason.</summary>
    BrokerError = 0,

    /// <summary>Invalid configuration or options (a bad URI, an unknown scheme, an out-of-range setting).</summary>
    Configuration,

    /// <summary>The topic name is empty, too long, or has characters the backend does not allow.</summary>
    InvalidTopic,

    /// <summary>The message exceeds the backend's size limit.</summary>
    MessageTooLarge,

    /// <summary>The broker could not be reached or the connection was lost.</summary>
    Connection,

    /// <summary>The operation did not complete within its timeout.</summary>
    Timeout,

    /// <summary>The topic exists with options that conflict with the ones requested.</summary>
    TopicConflict,

    /// <summary>The backend does not provide what was asked (see <see cref="BackendCapabilities"/>).</summary>
    NotSupported,

    /// <summary>The broker refused the credentials or the operation.</summary>
    Unauthorized,

    /// <summary>The broker did not confirm a published message.</summary>
    PublishNotConfirmed,

    /// <summary>The message itself is invalid, for example an application header with a name the bus reserves.</summary>
    InvalidMessage,
}
