namespace Bus.Conformance.Brokers;

/// <summary>
/// A broker could not be selected or started: no route was configured or present, the container did not start, or the
/// broker did not become ready within its startup timeout.
/// </summary>
public sealed class BrokerUnavailableException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="kind">The broker that is unavailable.</param>
    /// <param name="reason">Why, in one sentence; becomes the start of <see cref="Exception.Message"/>.</param>
    /// <param name="logTail">The last lines the broker logged, if there was a broker to ask; appended to the message.</param>
    /// <param name="innerException">The failure underneath, if any.</param>
    public BrokerUnavailableException(BrokerKind kind, string reason, string? logTail = null, Exception? innerException = null)
        : base(Format(kind, reason, logTail), innerException)
    {
        Kind = kind;
        Reason = reason;
        LogTail = logTail;
    }

    /// <summary>The broker that is unavailable.</summary>
    public BrokerKind Kind { get; }

    /// <summary>Why the broker is unavailable, without the log tail.</summary>
    public string Reason { get; }

    /// <summary>The last lines the broker logged, or <see langword="null"/> when there was no broker to ask.</summary>
    public string? LogTail { get; }

    private static string Format(BrokerKind kind, string reason, string? logTail) =>
        string.IsNullOrWhiteSpace(logTail)
            ? $"{kind}: {reason}"
            : $"{kind}: {reason}{Environment.NewLine}--- broker log tail ---{Environment.NewLine}{logTail.TrimEnd()}";
}
