namespace Bus;

/// <summary>
/// How to consume a topic, for both handler subscriptions and pull consumers. Mutable so it binds from
/// configuration; the bus validates and copies it when the subscription starts.
/// </summary>
public sealed class SubscriptionOptions
{
    /// <summary>The default <see cref="MaxDeliveries"/>: 5.</summary>
    public const int DefaultMaxDeliveries = 5;

    /// <summary>
    /// The consumer group. Consumers in one group compete for messages; different groups each receive every
    /// message. Required.
    /// </summary>
    public string Group { get; set; } = "";

    /// <summary>
    /// The most messages handed out and not yet settled, at once (backpressure; the prefetch). Default 16; 1 to 65,535.
    /// </summary>
    public int MaxInFlight { get; set; } = 16;

    /// <summary>
    /// Deliveries after which a failing message goes to the dead-letter topic instead of being retried.
    /// Default <see cref="DefaultMaxDeliveries"/>; at least 1.
    /// </summary>
    /// <remarks>
    /// A subscription retries a failing handler in place, counting each retry as a delivery
    /// (<see cref="ReceivedMessage.DeliveryCount"/>), but the backend knows only of its own deliveries. A subscription
    /// that stops while it is retrying leaves the message unsettled, and the next consumer starts from the backend's
    /// count: a message can then run more often than this limit in all, though never more often than it within one
    /// delivery.
    /// </remarks>
    public int MaxDeliveries { get; set; } = DefaultMaxDeliveries;

    /// <summary>
    /// The dead-letter topic. <see langword="null"/> (the default) means <c>&lt;topic&gt;.dlq</c> adjusted to the
    /// backend's naming rules (see <see cref="IMessageBus.GetDeadLetterTopic"/>).
    /// </summary>
    public string? DeadLetterTopic { get; set; }

    /// <summary>
    /// How long a delivered message may stay unsettled before the backend may deliver it again (to this or another
    /// consumer of the group), where the backend has such a lease: see <see cref="BusFeatures.AckTimeoutRedelivery"/>.
    /// Default 30 seconds.
    /// </summary>
    public TimeSpan AckTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Where a new group starts. Default <see cref="StartPosition.Latest"/>.</summary>
    public StartPosition StartPosition { get; set; }

    /// <summary>
    /// Whether messages of one key are handled one at a time, in order. Default <see langword="true"/>;
    /// messages without a key are never held back.
    /// </summary>
    public bool PerKeyOrdering { get; set; } = true;

    /// <summary>
    /// Handler subscriptions: the delay before the first in-place retry of a failed handler; later retries back
    /// off exponentially up to <see cref="MaxRetryDelay"/>. Default 50 ms.
    /// </summary>
    public TimeSpan RetryDelay { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>Handler subscriptions: the longest delay between in-place retries. Default 5 seconds.</summary>
    public TimeSpan MaxRetryDelay { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Handler subscriptions: how long disposing waits for running handlers before their cancellation token
    /// fires. Default 30 seconds. Handlers still running after their token fired get this long again, at most 5
    /// seconds; then disposing gives up on them, and their messages go back to the group unsettled (whatever such a
    /// handler does with its message when it ends is ignored). Pauses before in-place retries end when disposing
    /// starts; no retry begins after that.
    /// </summary>
    public TimeSpan ShutdownTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// A name for this consumer within its group, for backends that track consumers by name. Default: generated.
    /// </summary>
    public string? ConsumerName { get; set; }

    /// <summary>Creates options for <paramref name="group"/> with the defaults.</summary>
    /// <param name="group">The consumer group.</param>
    public static SubscriptionOptions ForGroup(string group) => new() { Group = group };

    /// <summary>A copy, so that later changes by the caller have no effect on a running subscription.</summary>
    public SubscriptionOptions Clone() => (SubscriptionOptions)MemberwiseClone();

    /// <summary>Throws if a setting is out of range, naming the setting.</summary>
    /// <exception cref="BusConfigurationException">A setting is invalid.</exception>
    public void Validate() => Validate(null, null);

    /// <summary>As <see cref="Validate()"/>, with the backend and topic the options are for named in the error.</summary>
    internal void Validate(string? backend, string? topic)
    {
        if (string.IsNullOrWhiteSpace(Group))
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(Group)} is required.", backend, topic);
        }

        if (MaxInFlight is < 1 or > 65_535)
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(MaxInFlight)} must be between 1 and 65535; it is {MaxInFlight}.", backend, topic);
        }

        if (MaxDeliveries < 1)
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(MaxDeliveries)} must be at least 1; it is {MaxDeliveries}.", backend, topic);
        }

        if (AckTimeout <= TimeSpan.Zero)
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(AckTimeout)} must be positive; it is {AckTimeout}.", backend, topic);
        }

        if (RetryDelay < TimeSpan.Zero || MaxRetryDelay < RetryDelay)
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(RetryDelay)} must be between zero and {nameof(MaxRetryDelay)}.", backend, topic);
        }

        // Polly's retry takes delays of at most a day; a longer one was refused only after the consumer had joined.
        if (MaxRetryDelay > MaxDelay)
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(MaxRetryDelay)} must be at most one day; it is {MaxRetryDelay}.", backend, topic);
        }

        if (ShutdownTimeout < TimeSpan.Zero || ShutdownTimeout > MaxShutdownTimeout)
        {
            throw Invalid($"{nameof(SubscriptionOptions)}.{nameof(ShutdownTimeout)} must be between zero and {MaxShutdownTimeout.TotalDays:0} days; it is {ShutdownTimeout}.", backend, topic);
        }
    }

    private static readonly TimeSpan MaxDelay = TimeSpan.FromDays(1);

    // Waits take at most int.MaxValue milliseconds (about 24.8 days); a longer one made disposing throw.
    private static readonly TimeSpan MaxShutdownTimeout = TimeSpan.FromDays(24);

    private static BusConfigurationException Invalid(string problem, string? backend, string? topic)
        => backend is null
            ? new BusConfigurationException(problem)
            : new BusConfigurationException($"{backend}: subscription to topic '{topic}': {problem}", backend, topic);
}
