using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// Header names some adapters carry the message's own fields in (RabbitMQ read an application header
/// <c>bus-message-id</c> back as the message id; Kafka's adapter dropped it) are refused before anything is sent, the
/// same on every backend.
/// </summary>
public class ReservedHeaderTests
{
    static ReservedHeaderTests() => BusTransports.Register(new DelegatingFactory("test-counting", inner => new Counting(inner)));

    [Theory]
    [InlineData("bus-key")]
    [InlineData("bus-message-id")]
    [InlineData("bus-correlation-id")]
    [InlineData("bus-content-type")]
    [InlineData("bus-reply-to")]
    public async Task A_reserved_header_is_refused_before_anything_is_sent_and_the_bus_stays_usable(string name)
    {
        await using var bus = MessageBus.Create("test-counting://");
        var transport = (Counting)bus.Transport;
        var message = OutgoingMessage.FromText("x");
        message.Headers[name] = "v";

        var one = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync("orders", message));
        var batch = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishBatchAsync("orders", [OutgoingMessage.FromText("fine"), message]));

        foreach (var error in new[] { one, batch })
        {
            Assert.Equal(BusFailureReason.InvalidMessage, error.Reason);
            Assert.Equal("orders", error.Topic);
            Assert.Contains($"'{name}'", error.Message, StringComparison.Ordinal);
            Assert.False(error.IsTransient);
        }

        Assert.Equal(0, transport.Published);
        await bus.PublishAsync("orders", OutgoingMessage.FromText("after"));
        Assert.Equal(1, transport.Published);
    }

    [Fact]
    public async Task Dead_letter_headers_and_other_names_may_be_set()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync("orders", SubscriptionOptions.ForGroup("g"));
        var message = OutgoingMessage.FromText("x");
        message.Headers[DeadLetterHeaders.Reason] = "by hand";
        message.Headers["bus-trace"] = "t";
        message.Headers["Bus-Key"] = "names are case-sensitive";
        await bus.PublishAsync("orders", message);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal("by hand", received.Headers[DeadLetterHeaders.Reason]);
        Assert.Equal("t", received.Headers["bus-trace"]);
        Assert.Equal("names are case-sensitive", received.Headers["Bus-Key"]);
        await received.AckAsync();
    }

    /// <summary>
    /// Another producer may write a reserved name where the backend does not read it as one of the message's fields:
    /// redrive leaves it out of the copy instead of failing on it.
    /// </summary>
    [Fact]
    public async Task Redrive_leaves_out_a_reserved_header_written_by_another_producer()
    {
        await using var bus = MessageBus.Create("memory://");
        await bus.EnsureTopicAsync("orders");
        var foreign = OutgoingMessage.FromText("from elsewhere");
        foreign.Headers["bus-key"] = "k";
        foreign.Headers["app"] = "kept";
        foreign.AssignIdIfMissing();
        await bus.Transport.PublishAsync("orders.dlq", foreign, CancellationToken.None); // past core's validation

        await using var consumer = await bus.CreateConsumerAsync("orders", SubscriptionOptions.ForGroup("g"));
        Assert.Equal(1, await bus.RedriveAsync("orders", new RedriveOptions { IdleTimeout = TimeSpan.FromMilliseconds(500) }));

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var redriven = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal("kept", redriven.Headers["app"]);
        Assert.False(redriven.Headers.ContainsKey("bus-key"));
        await redriven.AckAsync();
    }

    /// <summary>Counts the messages handed to the transport.</summary>
    private sealed class Counting(MessageTransport inner) : DelegatingTransport(inner)
    {
        private int _published;

        public int Published => Volatile.Read(ref _published);

        public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _published);
            return base.PublishAsync(topic, message, cancellationToken);
        }

        public override ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
        {
            Interlocked.Add(ref _published, messages.Count);
            return base.PublishBatchAsync(topic, messages, confirmations, cancellationToken);
        }
    }
}
