using System.Threading.Channels;
using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>What the bus owns while it is disposed, and what its errors may show.</summary>
public class BusLifecycleTests
{
    static BusLifecycleTests()
    {
        BusTransports.Register(new DelegatingFactory("test-slow-open", inner => new SlowOpen(inner)));
        BusTransports.Register(new DelegatingFactory("test-leaky", inner => new Leaky(inner)));
    }

    /// <summary>
    /// A subscription still joining when the bus is disposed: disposing did not know of it, and the receiver it opened
    /// afterwards was never closed (on Kafka, a group member holding partitions for nobody).
    /// </summary>
    [Fact]
    public async Task A_subscription_that_opens_while_the_bus_is_disposed_is_closed()
    {
        var bus = MessageBus.Create("test-slow-open://race");
        var transport = (SlowOpen)bus.Transport;
        await bus.EnsureTopicAsync("orders");
        var handled = 0;
        var subscribing = bus.SubscribeAsync("orders", (_, _) => { Interlocked.Increment(ref handled); return default; }, new SubscriptionOptions { Group = "g" }).AsTask();
        await transport.Entered.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var disposing = bus.DisposeAsync().AsTask();
        await Task.Delay(200);
        transport.Gate.TrySetResult();
        ISubscription? subscription = null;
        try
        {
            subscription = await subscribing.WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (ObjectDisposedException)
        {
        }

        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200);
        Assert.True(transport.Disposed);
        Assert.True(transport.Opened == transport.Closed, $"receivers opened {transport.Opened}, closed {transport.Closed}; subscription returned: {subscription is not null}, completed: {subscription?.Completion.IsCompleted}");
    }

    /// <summary>A transport's BusException that quotes the password is scrubbed by core's wrapping, as Create and Connect scrub theirs.</summary>
    [Fact]
    public async Task A_transport_error_that_quotes_the_password_is_scrubbed()
    {
        await using var bus = MessageBus.Create("test-leaky://user:hunter2-pw@host");
        var error = await Assert.ThrowsAnyAsync<Exception>(async () => await bus.PublishAsync("orders", OutgoingMessage.FromText("x")));
        Assert.DoesNotContain("hunter2-pw", error.ToString(), StringComparison.Ordinal);
    }

    private sealed class Leaky(MessageTransport inner) : DelegatingTransport(inner)
    {
        public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
            => throw new BusException("leaky: publish failed: connection 'amqp://user:hunter2-pw@host' was closed", BusFailureReason.Connection, "memory", topic);
    }

    private sealed class SlowOpen(MessageTransport inner) : DelegatingTransport(inner)
    {
        public TaskCompletionSource Entered { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public TaskCompletionSource Gate { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public int Opened;
        public int Closed;
        public bool Disposed { get; private set; }

        public override async ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
        {
            Entered.TrySetResult();
            await Gate.Task;
            var receiver = await base.OpenReceiverAsync(topic, options, cancellationToken);
            Interlocked.Increment(ref Opened);
            return new Tracked(receiver, this);
        }

        public override ValueTask DisposeAsync()
        {
            Disposed = true;
            return base.DisposeAsync();
        }

        private sealed class Tracked(TransportReceiver inner, SlowOpen owner) : TransportReceiver
        {
            public override ChannelReader<ReceivedMessage> Deliveries => inner.Deliveries;
            public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken) => inner.AckAsync(message, cancellationToken);
            public override ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken) => inner.NackAsync(message, delay, cancellationToken);
            public override ValueTask DisposeAsync()
            {
                Interlocked.Increment(ref owner.Closed);
                return inner.DisposeAsync();
            }
        }
    }
}
