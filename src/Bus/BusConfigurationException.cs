namespace Bus;

/// <summary>
/// Invalid configuration: a bad or unknown URI, an out-of-range option. Thrown at startup or before anything is
/// sent; the message names the setting and never echoes a password.
/// </summary>
public sealed class BusConfigurationException : BusException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong, naming the setting.</param>
    /// <param name="backend">The backend, if known.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    public BusConfigurationException(string message, string? backend = null, Exception? innerException = null)
        : base(message, BusFailureReason.Configuration, backend, null, false, innerException)
    {
    }

    /// <summary>Creates the exception for a setting that concerns one topic.</summary>
    /// <param name="message">What is wrong, naming the setting.</param>
    /// <param name="backend">The backend.</param>
    /// <param name="topic">The topic.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    public BusConfigurationException(string message, string? backend, string? topic, Exception? innerException = null)
        : base(message, BusFailureReason.Configuration, backend, topic, false, innerException)
    {
    }
}
