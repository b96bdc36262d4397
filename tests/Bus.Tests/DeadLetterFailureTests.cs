using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// When the dead-letter copy cannot be stored, the default dead-letter gives the delivery back (after a pause) instead
/// of leaving it unsettled on the backend with nobody to settle it: it is delivered again, counted, and dead-lettered
/// once the dead-letter topic works. The metric bus.messages.dead_lettered counts only the dead-letter that was stored.
/// </summary>
public class DeadLetterFailureTests
{
    static DeadLetterFailureTests() => BusTransports.Register(new DelegatingFactory("test-broken-dlq", inner => new BrokenDeadLetterTopic(inner)));

    [Fact]
    public async Task A_delivery_whose_dead_letter_copy_cannot_be_stored_is_delivered_again()
    {
        var topic = $"t-{Guid.NewGuid():N}";
        using var deadLettered = new MetricCounter("bus.messages.dead_lettered", topic);
        await using var bus = MessageBus.Create("test-broken-dlq://");
        var transport = (BrokenDeadLetterTopic)bus.Transport;
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromMinutes(5) });
        var sent = OutgoingMessage.FromText("poison", key: "k");
        await bus.PublishAsync(topic, sent);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var first = await consumer.ReceiveAsync(timeout.Token);

        var error = await Assert.ThrowsAnyAsync<Exception>(async () => await first.DeadLetterAsync("poison"));
        Assert.Contains("dead-letter topic is down", error.ToString(), StringComparison.Ordinal);
        Assert.True(first.IsSettled);
        Assert.Equal(0, deadLettered.Total); // counted before the backend call until now

        // Back after the pause, well before the ack timeout, counted; this time the copy is stored.
        transport.Broken = false;
        var again = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal(sent.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await again.DeadLetterAsync("poison");
        Assert.Equal(1, deadLettered.Total);

        await using var dlq = await bus.CreateConsumerAsync(bus.GetDeadLetterTopic(topic), new SubscriptionOptions { Group = "inspect", StartPosition = StartPosition.Earliest });
        var copy = await dlq.ReceiveAsync(timeout.Token);
        Assert.Equal(sent.MessageId, copy.MessageId);
    }

    /// <summary>Publishing to a dead-letter topic fails while <see cref="Broken"/>; dead-lettering is the default's.</summary>
    private sealed class BrokenDeadLetterTopic(MessageTransport inner) : DelegatingTransport(inner)
    {
        private volatile bool _broken = true;

        public bool Broken
        {
            get => _broken;
            set => _broken = value;
        }

        protected override bool UsesDefaultDeadLetter => true;

        public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
            => Broken && topic.EndsWith(".dlq", StringComparison.Ordinal)
                ? ValueTask.FromException(new InvalidOperationException("the dead-letter topic is down"))
                : base.PublishAsync(topic, message, cancellationToken);
    }
}
