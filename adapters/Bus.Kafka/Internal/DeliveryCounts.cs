using System.Collections.Concurrent;

namespace Bus.Kafka.Internal;

/// <summary>
/// Kafka keeps no delivery count, so the transport counts deliveries per group, topic, partition and offset for all
/// of its receivers: a nack or a message released by one consumer of this bus and redelivered to another is counted
/// exactly. A message redelivered to a consumer in another process starts again at 1. Entries go when acknowledged.
/// </summary>
internal sealed class DeliveryCounts
{
    private readonly ConcurrentDictionary<(string Group, string Topic), Scope> _scopes = new();

    /// <summary>
    /// The counts of one group on one topic, shared by every receiver of that group in this transport. A receiver
    /// looks its scope up once, so counting a delivery hashes two numbers rather than two strings as well.
    /// </summary>
    public Scope For(string group, string topic) => _scopes.GetOrAdd((group, topic), static _ => new Scope());

    /// <summary>Delivery counts by partition and offset.</summary>
    internal sealed class Scope
    {
        private readonly ConcurrentDictionary<(int Partition, long Offset), int> _counts = new();

        /// <summary>Counts one more delivery and returns the count, this delivery included.</summary>
        public int Next(int partition, long offset) => _counts.AddOrUpdate((partition, offset), 1, static (_, n) => n + 1);

        /// <summary>Forgets a message that is done.</summary>
        public void Done(int partition, long offset) => _counts.TryRemove((partition, offset), out _);
    }
}
