using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// Disposing a bus waits for its publishes under way (at most the operation timeout) before it closes the connection,
/// and lets handlers that finish during the shutdown publish.
/// </summary>
[Collection(ActivityListeners.Name)] // one test adds a process-wide activity listener
public class DisposeDrainTests
{
    static DisposeDrainTests()
    {
        BusTransports.Register(new DelegatingFactory("test-held", inner => new Held(inner)));
        BusTransports.Register(new DelegatingFactory("test-blocking", inner => new Blocking(inner)));
    }

    [Fact]
    public async Task Disposing_waits_for_publishes_under_way_and_refuses_new_ones()
    {
        var bus = MessageBus.Create("test-held://drain");
        var transport = (Held)bus.Transport;
        await bus.EnsureTopicAsync("orders");
        var one = bus.PublishAsync("orders", OutgoingMessage.FromText("one")).AsTask();
        var batch = bus.PublishBatchAsync("orders", [OutgoingMessage.FromText("two"), OutgoingMessage.FromText("three")]).AsTask();
        Assert.False(one.IsCompleted);

        var disposing = bus.DisposeAsync().AsTask();
        await Task.Delay(100);
        Assert.False(disposing.IsCompleted); // waiting for the two publishes
        Assert.False(transport.Disposed);
        await Assert.ThrowsAsync<ObjectDisposedException>(async () => await bus.PublishAsync("orders", OutgoingMessage.FromText("late")));

        transport.Release();
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
        await one;
        await batch;
        Assert.True(transport.Disposed);
    }

    [Fact]
    public async Task Disposing_gives_up_on_publishes_after_the_operation_timeout()
    {
        var bus = MessageBus.Create(new BusOptions { Url = "test-held://stuck", OperationTimeout = TimeSpan.FromMilliseconds(300) });
        var transport = (Held)bus.Transport;
        await bus.EnsureTopicAsync("orders");
        // Timed from before the publish, whose own 300 ms timeout may be what ends the wait: timed from after it, a
        // test process starved for more than 50 ms in between saw the wait end "early".
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var stuck = bus.PublishAsync("orders", OutgoingMessage.FromText("never confirmed")).AsTask();

        await bus.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.True(transport.Disposed);
        Assert.InRange(watch.Elapsed, TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(5));
        await Assert.ThrowsAnyAsync<Exception>(() => stuck); // core's own timeout (the transport does not bound its time)
    }

    [Fact]
    public async Task A_handler_that_finishes_during_dispose_may_still_publish()
    {
        var bus = MessageBus.Create("memory://");
        await using var consumerBus = bus;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finish = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Exception? publishError = null;
        await using var replies = await bus.CreateConsumerAsync("replies", SubscriptionOptions.ForGroup("r"));
        await bus.SubscribeAsync("requests", async (m, _) =>
        {
            started.TrySetResult();
            await finish.Task;
            try
            {
                await bus.PublishAsync("replies", OutgoingMessage.FromText("done"));
            }
            catch (Exception ex)
            {
                publishError = ex;
            }
        }, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync("requests", OutgoingMessage.FromText("work"));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));

        var disposing = bus.DisposeAsync().AsTask();
        finish.SetResult();
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Null(publishError);
    }

    [Fact]
    public async Task Disposing_waits_for_a_publish_still_in_the_transports_synchronous_part()
    {
        // Found in review: the count began after the transport's call returned, and a publish inside it (Kafka's
        // Produce, a channel opened on first use) had the connection closed under it.
        var bus = MessageBus.Create("test-blocking://inside");
        var transport = (Blocking)bus.Transport;
        await bus.EnsureTopicAsync("orders");
        transport.Block = true;
        var publish = Task.Run(() => bus.PublishAsync("orders", OutgoingMessage.FromText("x")).AsTask());
        Assert.True(transport.Entered.Wait(TimeSpan.FromSeconds(5)));

        var disposing = bus.DisposeAsync().AsTask();
        await Task.Delay(100);
        Assert.False(transport.Disposed);
        transport.Gate.Set();
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
        await publish;
        Assert.True(transport.Disposed);
    }

    [Fact]
    public async Task A_publish_failed_by_a_throwing_activity_listener_leaves_nothing_for_dispose_to_wait_for()
    {
        var topic = $"listener-throws-{Guid.NewGuid():N}";
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name == "Bus",
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllData,
            ActivityStarted = activity =>
            {
                if (activity.DisplayName == "send " + topic)
                {
                    throw new InvalidOperationException("a listener's bug");
                }
            },
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        var bus = MessageBus.Create(new BusOptions { Url = "memory://", OperationTimeout = TimeSpan.FromSeconds(5) });
        await bus.EnsureTopicAsync(topic);
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await bus.PublishAsync(topic, OutgoingMessage.FromText("x")));
        await Assert.ThrowsAsync<InvalidOperationException>(async () => await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("y")]));

        var watch = System.Diagnostics.Stopwatch.StartNew();
        await bus.DisposeAsync();
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2), $"dispose took {watch.Elapsed.TotalSeconds:0.0} s with nothing under way");
    }

    [Fact]
    public async Task A_request_waiting_for_its_reply_fails_when_the_bus_is_disposed()
    {
        var bus = MessageBus.Create("memory://");
        var request = bus.RequestAsync("nobody-answers", OutgoingMessage.FromText("?"), TimeSpan.FromSeconds(60)).AsTask();
        await Task.Delay(100);
        Assert.False(request.IsCompleted);

        await bus.DisposeAsync();
        await Assert.ThrowsAsync<ObjectDisposedException>(() => request.WaitAsync(TimeSpan.FromSeconds(5)));
    }

    /// <summary>A publish that blocks in the transport's synchronous part until released.</summary>
    private sealed class Blocking(MessageTransport inner) : DelegatingTransport(inner)
    {
        public volatile bool Block;

        public ManualResetEventSlim Entered { get; } = new();

        public ManualResetEventSlim Gate { get; } = new();

        public bool Disposed { get; private set; }

        public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
        {
            if (Block)
            {
                Entered.Set();
                Gate.Wait();
                ObjectDisposedException.ThrowIf(Disposed, this);
            }

            return base.PublishAsync(topic, message, cancellationToken);
        }

        public override ValueTask DisposeAsync()
        {
            Disposed = true;
            return base.DisposeAsync();
        }
    }

    /// <summary>Publishes that complete only when released (or never).</summary>
    private sealed class Held(MessageTransport inner) : DelegatingTransport(inner)
    {
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public bool Disposed { get; private set; }

        public void Release() => _release.TrySetResult();

        public override async ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
        {
            await _release.Task.WaitAsync(cancellationToken);
            await base.PublishAsync(topic, message, cancellationToken);
        }

        public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
        {
            await _release.Task.WaitAsync(cancellationToken);
            await base.PublishBatchAsync(topic, messages, confirmations, cancellationToken);
        }

        public override ValueTask DisposeAsync()
        {
            Disposed = true;
            return base.DisposeAsync();
        }
    }
}
