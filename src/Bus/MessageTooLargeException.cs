namespace Bus;

/// <summary>A message exceeds the backend's size limit. Thrown before anything is sent.</summary>
public sealed class MessageTooLargeException : BusException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="backend">The backend.</param>
    /// <param name="topic">The topic.</param>
    /// <param name="size">The message's size in bytes.</param>
    /// <param name="limit">The backend's limit in bytes.</param>
    public MessageTooLargeException(string backend, string topic, long size, long limit)
        : base($"{backend}: message of {size} bytes for topic '{topic}' exceeds the maximum of {limit} bytes.", BusFailureReason.MessageTooLarge, backend, topic)
    {
        Size = size;
        Limit = limit;
    }

    /// <summary>The message's size in bytes (body plus key and headers).</summary>
    public long Size { get; }

    /// <summary>The backend's limit in bytes.</summary>
    public long Limit { get; }
}
