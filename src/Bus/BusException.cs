namespace Bus;

/// <summary>
/// The one root of every error the bus raises. Names the backend and topic; the broker's or client's own
/// exception is the <see cref="Exception.InnerException"/>. Never contains a password.
/// </summary>
public class BusException : Exception
{
    /// <summary>Creates an exception.</summary>
    /// <param name="message">What went wrong, naming the backend and topic where known.</param>
    /// <param name="reason">The failure category.</param>
    /// <param name="backend">The backend's name, e.g. <c>rabbitmq</c>.</param>
    /// <param name="topic">The topic involved, if any.</param>
    /// <param name="isTransient">Whether retrying the same call may succeed.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    public BusException(string message, BusFailureReason reason, string? backend = null, string? topic = null, bool isTransient = false, Exception? innerException = null)
        : base(message, innerException)
    {
        Reason = reason;
        Backend = backend;
        Topic = topic;
        IsTransient = isTransient;
    }

    /// <summary>The failure category.</summary>
    public BusFailureReason Reason { get; }

    /// <summary>The backend's name, or <see langword="null"/> before a backend was chosen.</summary>
    public string? Backend { get; }

    /// <summary>The topic involved, or <see langword="null"/>.</summary>
    public string? Topic { get; }

    /// <summary>Whether retrying the same call may succeed (a lost connection, a timeout).</summary>
    public bool IsTransient { get; }
}
