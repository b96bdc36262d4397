namespace Bus;

/// <summary>
/// A running handler subscription. Disposing it stops taking new messages, waits for running handlers (up to
/// <see cref="SubscriptionOptions.ShutdownTimeout"/>, after which their token fires), settles what they finished,
/// and releases everything else back to the group, so nothing is lost.
/// </summary>
public interface ISubscription : IAsyncDisposable
{
    /// <summary>The topic.</summary>
    string Topic { get; }

    /// <summary>The group.</summary>
    string Group { get; }

    /// <summary>
    /// Completes when the subscription stops: normally after disposal, or with the exception that ended it
    /// (for example a lost connection that could not be recovered).
    /// </summary>
    Task Completion { get; }
}
