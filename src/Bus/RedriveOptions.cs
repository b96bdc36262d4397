namespace Bus;

/// <summary>Options for <see cref="IMessageBus.RedriveAsync"/>.</summary>
public sealed class RedriveOptions
{
    /// <summary>The dead-letter topic to drain; <see langword="null"/> for the topic's default dead-letter topic.</summary>
    public string? DeadLetterTopic { get; set; }

    /// <summary>The most messages to move; <see langword="null"/> for all. </summary>
    public int? MaxMessages { get; set; }

    /// <summary>Stop when no message has arrived for this long. Default 2 seconds.</summary>
    public TimeSpan IdleTimeout { get; set; } = TimeSpan.FromSeconds(2);
}
