using System.Collections.Concurrent;

namespace Bus.Kafka.Internal;

/// <summary>
/// Kafka keeps no delivery count, so the transport counts deliveries per group, topic, partition and offset for all
/// of its receivers: a nack or a message released by one consumer of this bus and redelivered to another is counted
/// exactly. A message redelivered to a consumer in another process starts again at 1. Entries go when acknowledged.
/// </summary>
internal sealed class DeliveryCounts
{
    private readonly ConcurrentDictionary<(string Group, string Topic, int Partition, long Offset), int> _counts = new();

    /// <summary>Counts one more delivery and returns the count, this delivery included.</summary>
    public int Next(string group, string topic, int partition, long offset)
        => _counts.AddOrUpdate((group, topic, partition, offset), 1, static (_, n) => n + 1);

    /// <summary>Forgets a message that is done.</summary>
    public void Done(string group, string topic, int partition, long offset) => _counts.TryRemove((group, topic, partition, offset), out _);
}
