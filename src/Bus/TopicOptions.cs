namespace Bus;

/// <summary>
/// Options for <see cref="IMessageBus.EnsureTopicAsync"/>. <see langword="null"/> properties mean "the backend's
/// default, and no conflict with whatever exists".
/// </summary>
public sealed class TopicOptions
{
    /// <summary>Partitions (Kafka, in-memory) or the equivalent sharding unit; <see langword="null"/> for the default.</summary>
    public int? Partitions { get; set; }

    /// <summary>
    /// Whether the topic must keep per-key order across competing consumers where the backend makes that a topic
    /// property (SQS FIFO queues, RabbitMQ single active consumer); <see langword="null"/> for the backend's default.
    /// </summary>
    public bool? Ordered { get; set; }

    /// <summary>How long messages are retained for replay; <see langword="null"/> for the backend's default.</summary>
    public TimeSpan? Retention { get; set; }

    /// <summary>Backend-specific settings (for example <c>queue-type</c>), documented by each backend.</summary>
    public IDictionary<string, string> Properties { get; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    /// <summary>A copy, so later changes by the caller have no effect.</summary>
    public TopicOptions Clone()
    {
        var copy = new TopicOptions { Partitions = Partitions, Ordered = Ordered, Retention = Retention };
        foreach (var (name, value) in Properties)
        {
            copy.Properties[name] = value;
        }

        return copy;
    }
}
