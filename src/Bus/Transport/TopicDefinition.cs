namespace Bus.Transport;

/// <summary>What <see cref="MessageTransport.EnsureTopicAsync"/> must create.</summary>
/// <param name="Name">The topic's name (validated).</param>
/// <param name="Options">Its options; never <see langword="null"/>.</param>
/// <param name="DurableGroups">
/// Groups that must exist from now on, so that messages published before they first subscribe are kept for them.
/// A dead-letter topic always names <see cref="BusDefaults.DeadLetterGroup"/>.
/// </param>
/// <param name="IsDeadLetterTopic">Whether this is a dead-letter topic (which has no dead-letter topic of its own).</param>
public sealed record TopicDefinition(string Name, TopicOptions Options, IReadOnlyList<string> DurableGroups, bool IsDeadLetterTopic);
