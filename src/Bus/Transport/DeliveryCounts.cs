using System.Collections.Concurrent;

namespace Bus.Transport;

/// <summary>
/// Delivery counts kept by a transport whose broker keeps none (Kafka) or only flags a redelivery (RabbitMQ classic
/// queues), per group and topic, for all receivers of one bus: a message nacked, or released by one consumer of the bus
/// and delivered again to another, is counted exactly. A message redelivered to a consumer in another process starts
/// again, so a transport that relies on these does not declare <see cref="BusFeatures.SharedDeliveryCount"/>.
/// </summary>
/// <remarks>
/// An entry goes when the transport calls <see cref="Scope.Done"/> (on acknowledgement), or once its message has not
/// been counted for <see cref="ForgetAfter"/>: a message last delivered here and then settled in another process (a
/// consumer of another bus acknowledged it) is never done here, and would otherwise stay for the life of the bus. So a
/// message redelivered after a longer pause (a nack with a longer delay) counts as if it were new.
/// </remarks>
/// <typeparam name="TKey">What identifies a message within a group's topic (a partition and offset, a message id).</typeparam>
public sealed class DeliveryCounts<TKey>
    where TKey : notnull
{
    /// <summary>The default of <see cref="ForgetAfter"/>: one hour.</summary>
    public static readonly TimeSpan DefaultForgetAfter = TimeSpan.FromHours(1);

    private readonly ConcurrentDictionary<(string Group, string Topic), Scope> _scopes = new();

    /// <summary>Counts that forget a message after <see cref="DefaultForgetAfter"/> without a delivery.</summary>
    public DeliveryCounts()
        : this(DefaultForgetAfter)
    {
    }

    /// <summary>Counts that forget a message after <paramref name="forgetAfter"/> without a delivery.</summary>
    /// <param name="forgetAfter">How long an entry stays without a delivery of its message; positive.</param>
    public DeliveryCounts(TimeSpan forgetAfter)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(forgetAfter, TimeSpan.Zero);
        ForgetAfter = forgetAfter;
    }

    /// <summary>How long an entry stays without a delivery of its message.</summary>
    public TimeSpan ForgetAfter { get; }

    /// <summary>
    /// The counts of one group on one topic, shared by every receiver of that group in this bus. Look it up once per
    /// receiver, so that counting a delivery hashes the key alone.
    /// </summary>
    /// <param name="group">The consumer group.</param>
    /// <param name="topic">The topic.</param>
    public Scope For(string group, string topic)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(topic);
        return _scopes.GetOrAdd((group, topic), static (_, forgetAfter) => new Scope((long)forgetAfter.TotalMilliseconds), ForgetAfter);
    }

    /// <summary>Delivery counts by key.</summary>
    public sealed class Scope
    {
        private readonly ConcurrentDictionary<TKey, Counted> _counts = new();
        private readonly long _forgetAfterMs;
        private long _sweptAt = Environment.TickCount64;

        internal Scope(long forgetAfterMs)
        {
            _forgetAfterMs = forgetAfterMs;
        }

        /// <summary>Messages counted and not yet done or forgotten.</summary>
        public int Count => _counts.Count;

        /// <summary>Counts one more delivery of the message <paramref name="key"/> and returns its count.</summary>
        /// <param name="key">The message.</param>
        /// <param name="whenUnknown">
        /// The count of a delivery of a message not counted before: 1 where every delivery is counted, 2 where only
        /// redeliveries are (the broker flagged this one as a redelivery). At least 1.
        /// </param>
        /// <returns>The delivery count, this delivery included.</returns>
        public int Next(TKey key, int whenUnknown = 1)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(whenUnknown, 1);
            var now = Environment.TickCount64;
            var counted = _counts.AddOrUpdate(
                key,
                static (_, arg) => new Counted(arg.WhenUnknown, arg.Now),
                static (_, old, arg) => new Counted(old.Count + 1, arg.Now),
                (WhenUnknown: whenUnknown, Now: now));
            if (now - Volatile.Read(ref _sweptAt) > _forgetAfterMs / 4)
            {
                Sweep(now);
            }

            return counted.Count;
        }

        /// <summary>Forgets a message that is done (acknowledged, or dead-lettered).</summary>
        /// <param name="key">The message.</param>
        public void Done(TKey key) => _counts.TryRemove(key, out _);

        /// <summary>Forgets the messages not delivered for longer than the scope's limit; one caller at a time.</summary>
        private void Sweep(long now)
        {
            var swept = Volatile.Read(ref _sweptAt);
            if (Interlocked.CompareExchange(ref _sweptAt, now, swept) != swept)
            {
                return;
            }

            foreach (var entry in _counts)
            {
                if (now - entry.Value.LastMs > _forgetAfterMs)
                {
                    // Only if unchanged: a delivery counted meanwhile keeps it.
                    _counts.TryRemove(entry);
                }
            }
        }

        private readonly record struct Counted(int Count, long LastMs);
    }
}
