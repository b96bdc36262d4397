using Xunit;

namespace Bus.Tests;

/// <summary>What a subscription's shutdown timeout does to messages being handled or retried, and options it cannot honour.</summary>
public class SubscriptionShutdownTests
{
    private static string NewTopic(string hint) => $"{hint}-{Guid.NewGuid():N}";

    private static async Task<ReceivedMessage?> DeadLetterOf(MessageBus bus, string topic)
    {
        await using var dlq = await bus.CreateConsumerAsync(bus.GetDeadLetterTopic(topic), new SubscriptionOptions { Group = "inspect", StartPosition = StartPosition.Earliest });
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
        try
        {
            return await dlq.ReceiveAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>A subscription whose handler always throws, with one message published to it and handled once.</summary>
    private sealed class FailingHandler
    {
        private int _runs;

        public ISubscription Subscription { get; private set; } = null!;

        public int Runs => Volatile.Read(ref _runs);

        public static async Task<FailingHandler> SubscribeAsync(MessageBus bus, string topic, int maxDeliveries, TimeSpan retryDelay, TimeSpan shutdownTimeout)
        {
            var failing = new FailingHandler();
            var first = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            failing.Subscription = await bus.SubscribeAsync(topic, (m, _) =>
            {
                Interlocked.Increment(ref failing._runs);
                first.TrySetResult();
                throw new InvalidOperationException("fail");
            }, new SubscriptionOptions
            {
                Group = "g",
                MaxDeliveries = maxDeliveries,
                RetryDelay = retryDelay,
                MaxRetryDelay = retryDelay,
                ShutdownTimeout = shutdownTimeout,
            });
            await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
            await first.Task.WaitAsync(TimeSpan.FromSeconds(10));
            return failing;
        }
    }

    private static string Describe(ReceivedMessage? copy)
        => copy is null ? "none" : $"reason '{copy.Headers[DeadLetterHeaders.Reason]}', count {copy.Headers[DeadLetterHeaders.DeliveryCount]}";

    /// <summary>
    /// The shutdown timeout cancels the pause before a retry: the retry was counted already (at the limit), and the
    /// cancellation was taken for the handler's failure, so a message whose last attempt never ran was dead-lettered.
    /// </summary>
    [Fact]
    public async Task A_shutdown_timeout_during_a_retry_pause_does_not_dead_letter_the_message()
    {
        await using var bus = MessageBus.Create("memory://");
        var topic = NewTopic("retry-abort");
        var failing = await FailingHandler.SubscribeAsync(bus, topic, maxDeliveries: 2, retryDelay: TimeSpan.FromMinutes(1), shutdownTimeout: TimeSpan.FromMilliseconds(200));
        await Task.Delay(100); // now waiting out the retry delay
        await failing.Subscription.DisposeAsync();

        var copy = await DeadLetterOf(bus, topic);
        Assert.True(copy is null, $"handler ran {failing.Runs} time(s) of MaxDeliveries 2, yet dead-lettered: {Describe(copy)}");
    }

    /// <summary>The shutdown timeout cancelling a handler is no failure of its message, even on its last allowed delivery.</summary>
    [Fact]
    public async Task A_handler_cancelled_by_the_shutdown_timeout_on_its_last_delivery_is_not_dead_lettered()
    {
        await using var bus = MessageBus.Create("memory://");
        var topic = NewTopic("abort-last");
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sub = await bus.SubscribeAsync(topic, async (m, ct) =>
        {
            started.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
        }, new SubscriptionOptions { Group = "g", MaxDeliveries = 1, ShutdownTimeout = TimeSpan.FromMilliseconds(100) });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await sub.DisposeAsync();

        var copy = await DeadLetterOf(bus, topic);
        Assert.True(copy is null, $"a handler cancelled by shutdown was dead-lettered: {Describe(copy)}");
    }

    /// <summary>
    /// Disposing ends the pause before an in-place retry at once: it used to wait it out (up to the shutdown timeout),
    /// though no retry may begin once the subscription stops. The message goes back to the group, not to the DLQ.
    /// </summary>
    [Fact]
    public async Task Disposing_ends_the_pause_before_a_retry_at_once()
    {
        await using var bus = MessageBus.Create("memory://");
        var topic = NewTopic("retry-stop");
        var failing = await FailingHandler.SubscribeAsync(bus, topic, maxDeliveries: 5, retryDelay: TimeSpan.FromMinutes(10), shutdownTimeout: TimeSpan.FromMinutes(10));

        // Without the fix this waits out the ten-minute pause.
        await failing.Subscription.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, failing.Runs);
        await using var again = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var redelivered = await again.ReceiveAsync(timeout.Token);
        Assert.Equal("x", redelivered.GetText());
        await redelivered.AckAsync();
        Assert.Null(await DeadLetterOf(bus, topic));
    }

    /// <summary>
    /// A handler that ignores its cancellation token no longer holds disposal for good: once the shutdown timeout has
    /// fired the token and the grace after it has passed, disposing gives up on the handler and its message goes back
    /// to the group. When the handler ends later, what it did is ignored: the message is not settled, retried or
    /// dead-lettered from the abandoned subscription.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Disposing_gives_up_on_a_handler_that_ignores_its_token(bool handlerThrowsWhenItEnds)
    {
        await using var bus = MessageBus.Create("memory://");
        var topic = NewTopic("stuck");
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var ended = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var sub = await bus.SubscribeAsync(topic, async (m, _) =>
        {
            started.TrySetResult();
            try
            {
                await release.Task; // ignores the token
            }
            finally
            {
                ended.TrySetResult();
            }

            if (handlerThrowsWhenItEnds)
            {
                throw new InvalidOperationException("ended late");
            }
        }, new SubscriptionOptions { Group = "g", MaxDeliveries = 1, ShutdownTimeout = TimeSpan.FromMilliseconds(100) });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));

        // Without the fix this never ends.
        await sub.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(30));

        await using var again = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var redelivered = await again.ReceiveAsync(timeout.Token);
        Assert.Equal("x", redelivered.GetText());
        Assert.Equal(2, redelivered.DeliveryCount);

        release.SetResult();
        await ended.Task.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.Delay(200); // let the abandoned handler's ending run its course

        Assert.False(redelivered.IsSettled);
        await redelivered.AckAsync();
        Assert.Null(await DeadLetterOf(bus, topic));
    }

    /// <summary>
    /// Values the retry policy or the shutdown wait cannot take are refused when subscribing, before the consumer joins:
    /// a retry delay over a day was refused by Polly only after joining (the member stayed in the group, holding
    /// messages), and a shutdown timeout of 60 days made disposing throw.
    /// </summary>
    [Theory]
    [InlineData(2.0, 0.0)]
    [InlineData(0.0, 60.0)]
    public async Task Retry_delays_and_shutdown_timeouts_that_cannot_be_honoured_are_refused_before_joining(double retryDays, double shutdownDays)
    {
        await using var bus = MessageBus.Create("memory://");
        var topic = NewTopic("limits");
        var options = new SubscriptionOptions { Group = "g" };
        if (retryDays > 0)
        {
            options.MaxRetryDelay = TimeSpan.FromDays(retryDays);
        }

        if (shutdownDays > 0)
        {
            options.ShutdownTimeout = TimeSpan.FromDays(shutdownDays);
        }

        await Assert.ThrowsAsync<BusConfigurationException>(async () => await bus.SubscribeAsync(topic, (_, _) => default, options));

        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g" });
        for (var i = 0; i < 4; i++)
        {
            await bus.PublishAsync(topic, OutgoingMessage.FromText($"m{i}"));
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
        for (var i = 0; i < 4; i++)
        {
            var message = await consumer.ReceiveAsync(timeout.Token); // all four: no member of the refused subscription holds any
            await message.AckAsync();
        }
    }
}
