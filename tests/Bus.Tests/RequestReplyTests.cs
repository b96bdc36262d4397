using System.Threading.Channels;
using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>Request/reply beyond the conformance case: reuse of a request message, failures of the reply listener, requests during dispose.</summary>
public class RequestReplyTests
{
    static RequestReplyTests() => BusTransports.Register(new DelegatingFactory("test-flaky-reply-ack", inner => new FlakyReplyAck(inner)));

    /// <summary>
    /// A request message sent again after a timeout gets a new correlation id: the bus once wrote the one it made into
    /// the message, and the late reply to the first request was returned as the reply to the second.
    /// </summary>
    /// <remarks>
    /// Ordered by signals, not by delays: the first reply goes only once its request has timed out, and the second
    /// only after the first. (With a 600 ms delay against a 200 ms timeout, a CI run starved of CPU once fired both
    /// timers together, and the first reply beat its request's timeout.)
    /// </remarks>
    [Fact]
    public async Task A_late_reply_is_not_taken_for_the_reply_to_a_later_request_of_the_same_message()
    {
        var firstTimedOut = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstReplied = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var bus = MessageBus.Create("memory://late-reply");
        await using var responder = await bus.SubscribeAsync("rpc", async (message, token) =>
        {
            var first = message.GetText() == "first";
            await (first ? firstTimedOut.Task : firstReplied.Task).WaitAsync(token);
            await bus.ReplyAsync(message, OutgoingMessage.FromText("reply to " + message.GetText()), token);
            if (first)
            {
                firstReplied.TrySetResult();
            }
        }, new SubscriptionOptions { Group = "rpc", PerKeyOrdering = false });

        var request = OutgoingMessage.FromText("first");
        await Assert.ThrowsAsync<BusException>(async () => await bus.RequestAsync("rpc", request, TimeSpan.FromMilliseconds(200)));
        firstTimedOut.SetResult();
        request.Body = System.Text.Encoding.UTF8.GetBytes("second");
        var reply = await bus.RequestAsync("rpc", request, TimeSpan.FromSeconds(5));
        Assert.Equal("reply to second", reply.GetText());
        Assert.True(firstReplied.Task.IsCompleted, "the first request's reply was sent before the second's");
    }

    /// <summary>
    /// A handler still running when the bus is disposed may publish, and so make a request, once the bus has its reply
    /// listener (a bus whose first request comes while it is disposed cannot open one: its consumers are being closed).
    /// </summary>
    [Fact]
    public async Task A_handler_that_finishes_while_the_bus_is_disposed_may_make_a_request()
    {
        var bus = MessageBus.Create("memory://request-in-dispose");
        var responderBus = MessageBus.Create("memory://request-in-dispose");
        await using var _ = responderBus;
        await using var responder = await responderBus.SubscribeAsync("pricing", async (message, token) =>
            await responderBus.ReplyAsync(message, OutgoingMessage.FromText("42"), token), new SubscriptionOptions { Group = "pricing" });

        Assert.Equal("42", (await bus.RequestAsync("pricing", OutgoingMessage.FromText("?"), TimeSpan.FromSeconds(5))).GetText());
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var outcome = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await bus.SubscribeAsync("orders", async (message, token) =>
        {
            started.TrySetResult();
            await release.Task;
            try
            {
                var price = await bus.RequestAsync("pricing", OutgoingMessage.FromText("?"), TimeSpan.FromSeconds(5), token);
                outcome.TrySetResult("price " + price.GetText());
            }
            catch (Exception ex)
            {
                outcome.TrySetResult(ex.GetType().Name + ": " + ex.Message);
                throw;
            }
        }, new SubscriptionOptions { Group = "billing", MaxDeliveries = 1 });
        await bus.PublishAsync("orders", OutgoingMessage.FromText("order"));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var disposing = bus.DisposeAsync().AsTask();
        await Task.Delay(100);
        release.TrySetResult();
        Assert.Equal("price 42", await outcome.Task.WaitAsync(TimeSpan.FromSeconds(10)));
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
    }

    /// <summary>
    /// One failed ack of a reply (a transient broker error) once ended the reply listener for good, and every later
    /// request waited out its timeout.
    /// </summary>
    [Fact]
    public async Task Requests_keep_working_after_one_reply_ack_fails()
    {
        await using var bus = MessageBus.Create("test-flaky-reply-ack://replies");
        await using var responder = await bus.SubscribeAsync("rpc", async (message, token) =>
            await bus.ReplyAsync(message, OutgoingMessage.FromText("pong"), token), new SubscriptionOptions { Group = "rpc" });

        var first = await bus.RequestAsync("rpc", OutgoingMessage.FromText("ping 1"), TimeSpan.FromSeconds(5));
        Assert.Equal("pong", first.GetText());
        await Task.Delay(200);
        var second = await bus.RequestAsync("rpc", OutgoingMessage.FromText("ping 2"), TimeSpan.FromSeconds(3));
        Assert.Equal("pong", second.GetText());
    }

    private sealed class FlakyReplyAck(MessageTransport inner) : DelegatingTransport(inner)
    {
        private int _failed;

        public override async ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
        {
            var receiver = await base.OpenReceiverAsync(topic, options, cancellationToken);
            return topic.StartsWith("bus-replies-", StringComparison.Ordinal) ? new Receiver(receiver, this) : receiver;
        }

        private sealed class Receiver(TransportReceiver inner, FlakyReplyAck owner) : TransportReceiver
        {
            public override ChannelReader<ReceivedMessage> Deliveries => inner.Deliveries;
            public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
                => Interlocked.Exchange(ref owner._failed, 1) == 0
                    ? throw new BusException("flaky: ack failed (transient)", BusFailureReason.Connection, "memory", message.Topic, isTransient: true)
                    : inner.AckAsync(message, cancellationToken);
            public override ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken) => inner.NackAsync(message, delay, cancellationToken);
            public override ValueTask DisposeAsync() => inner.DisposeAsync();
        }
    }

}
