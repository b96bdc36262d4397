using System.Collections.Concurrent;

namespace Bus.Transport;

/// <summary>
/// Delivery counts kept by a transport whose broker keeps none (Kafka) or only flags a redelivery (RabbitMQ classic
/// queues), per group and topic, for all receivers of one bus: a message nacked, or released by one consumer of the bus
/// and delivered again to another, is counted exactly. A message redelivered to a consumer in another process starts
/// again, so a transport that relies on these does not declare <see cref="BusFeatures.SharedDeliveryCount"/>. Entries
/// go when the transport calls <see cref="Scope.Done"/> (on acknowledgement); one whose message went to another process
/// stays until then, so keys should be the backend's own identity of the message.
/// </summary>
/// <typeparam name="TPosition">What identifies a message within a group's topic (an offset, a message id).</typeparam>
public sealed class DeliveryCounts<TPosition>
    where TPosition : notnull
{
    private readonly ConcurrentDictionary<(string Group, string Topic), Scope> _scopes = new();

    /// <summary>
    /// The counts of one group on one topic, shared by every receiver of that group in this bus. Look it up once per
    /// receiver, so that counting a delivery hashes the position alone.
    /// </summary>
    /// <param name="group">The consumer group.</param>
    /// <param name="topic">The topic.</param>
    public Scope For(string group, string topic) => _scopes.GetOrAdd((group, topic), static _ => new Scope());

    /// <summary>Delivery counts by position.</summary>
    public sealed class Scope
    {
        private readonly ConcurrentDictionary<TPosition, int> _counts = new();

        internal Scope()
        {
        }

        /// <summary>Messages counted and not yet done.</summary>
        public int Count => _counts.Count;

        /// <summary>Counts one more delivery of the message at <paramref name="position"/> and returns its count.</summary>
        /// <param name="position">The message.</param>
        /// <param name="whenUnknown">
        /// The count of a delivery of a message not counted before: 1 where every delivery is counted, 2 where only
        /// redeliveries are (the broker flagged this one as a redelivery).
        /// </param>
        /// <returns>The delivery count, this delivery included.</returns>
        public int Next(TPosition position, int whenUnknown = 1) => _counts.AddOrUpdate(position, whenUnknown, static (_, n) => n + 1);

        /// <summary>Forgets a message that is done (acknowledged, or dead-lettered).</summary>
        /// <param name="position">The message.</param>
        public void Done(TPosition position) => _counts.TryRemove(position, out _);
    }
}
