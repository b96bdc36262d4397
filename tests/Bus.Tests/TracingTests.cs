using System.Collections.Concurrent;
using System.Diagnostics;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// Tests that add an <see cref="ActivityListener"/> for the source "Bus" run alone: the listener is process-wide, and
/// while it listens every bus of every test records spans (a publish then formats its message id, which a test of the
/// in-memory backend checks is not done).
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class ActivityListeners
{
    public const string Name = "activity listeners";
}

/// <summary>
/// Traces: a "send" span per publish, a "process" span per handled message, and the W3C trace context carried between
/// them in the message's headers. The listener is process-wide, so each test picks out its own spans by topic.
/// </summary>
[Collection(ActivityListeners.Name)]
public sealed class TracingTests : IDisposable
{
    private static readonly ActivitySource Application = new("Bus.Tests.Application");
    private readonly ConcurrentQueue<Activity> _stopped = new();
    private readonly ActivityListener _listener;

    public TracingTests()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is "Bus" or "Bus.Tests.Application",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = _stopped.Enqueue,
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public void Dispose() => _listener.Dispose();

    private Activity[] Spans(string name) => [.. _stopped.Where(a => a.DisplayName == name)];

    private static string Topic(string hint) => $"{hint}-{Guid.NewGuid():N}";

    private async Task<Activity> WaitForSpanAsync(string name)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        while (Spans(name).Length == 0)
        {
            await Task.Delay(10, timeout.Token);
        }

        return Spans(name)[0];
    }

    /// <summary>
    /// A message that the trace context's headers push over the size limit is refused as too large, also in a batch
    /// (not reported as a batch that failed part way), and nothing of the batch is sent.
    /// </summary>
    [Fact]
    public async Task A_batch_message_pushed_over_the_limit_by_the_trace_headers_is_refused_as_too_large()
    {
        var topic = Topic("over");
        await using var bus = MessageBus.Create("memory://?max-message-size=1000");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        var fits = OutgoingMessage.FromText("fits");
        var empty = new OutgoingMessage(Array.Empty<byte>());
        empty.AssignIdIfMissing();
        var atTheLimit = new OutgoingMessage(new byte[1000 - bus.Transport.MeasureMessage(empty) - 10]); // the trace headers add more than 10 bytes
        await bus.PublishAsync(topic, OutgoingMessage.FromText("warm"));
        using var warm = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await (await consumer.ReceiveAsync(warm.Token)).AckAsync();

        await Assert.ThrowsAsync<MessageTooLargeException>(async () => await bus.PublishBatchAsync(topic, [fits, atTheLimit]));

        using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(300));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await consumer.ReceiveAsync(quiet.Token));
    }

    [Fact]
    public async Task The_handler_runs_in_a_process_span_that_continues_the_publishers_trace()
    {
        var topic = Topic("traced");
        await using var bus = MessageBus.Create("memory://");
        var handled = new TaskCompletionSource<(ReceivedMessage Message, Activity? Current)>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await bus.SubscribeAsync(topic, (m, _) =>
        {
            handled.TrySetResult((m, Activity.Current));
            return default;
        }, SubscriptionOptions.ForGroup("g"));

        var message = OutgoingMessage.FromText("x");
        message.CorrelationId = "corr-1";
        using (var request = Application.StartActivity("request"))
        {
            Assert.NotNull(request);
            await bus.PublishAsync(topic, message);
            Assert.Same(request, Activity.Current); // the send span ended and is not left current
        }

        var (received, current) = await handled.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var request1 = Assert.Single(Spans("request"));
        var send = Assert.Single(Spans("send " + topic));
        var process = await WaitForSpanAsync("process " + topic);

        Assert.Equal(ActivityKind.Producer, send.Kind);
        Assert.Equal(request1.SpanId, send.ParentSpanId);
        Assert.Equal("memory", send.GetTagItem("messaging.system"));
        Assert.Equal(topic, send.GetTagItem("messaging.destination.name"));
        Assert.Equal(message.MessageId, send.GetTagItem("messaging.message.id"));
        Assert.Equal("corr-1", send.GetTagItem("messaging.message.conversation_id"));

        Assert.Equal(ActivityKind.Consumer, process.Kind);
        Assert.Equal(send.TraceId, process.TraceId);
        Assert.Equal(send.SpanId, process.ParentSpanId);
        Assert.Equal("g", process.GetTagItem("messaging.consumer.group.name"));
        Assert.Equal(received.MessageId, process.GetTagItem("messaging.message.id"));
        Assert.Equal(ActivityStatusCode.Unset, process.Status);
        Assert.Same(process, current); // what the handler publishes continues the trace

        // The caller's message is left as it was: a copy carried the context.
        Assert.False(message.HasHeaders);
        Assert.StartsWith("00-" + send.TraceId.ToHexString() + "-" + send.SpanId.ToHexString(), received.Headers[BusDefaults.TraceParentHeader], StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_batch_is_one_send_span_and_every_message_carries_its_context()
    {
        var topic = Topic("batch");
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        var batch = Enumerable.Range(0, 3).Select(i => OutgoingMessage.FromText($"m{i}")).ToArray();
        using var request = Application.StartActivity("request");
        await bus.PublishBatchAsync(topic, batch);
        Assert.Same(request, Activity.Current);

        var send = Assert.Single(Spans("send " + topic));
        Assert.Equal(3, send.GetTagItem("messaging.batch.message_count"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        for (var i = 0; i < 3; i++)
        {
            var received = await consumer.ReceiveAsync(timeout.Token);
            Assert.Contains(send.SpanId.ToHexString(), received.Headers[BusDefaults.TraceParentHeader], StringComparison.Ordinal);
            await received.AckAsync();
        }

        Assert.All(batch, m => Assert.False(m.HasHeaders));
    }

    [Fact]
    public async Task A_pull_consumer_starts_its_process_span_in_the_publishers_trace()
    {
        var topic = Topic("pull");
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        var send = Assert.Single(Spans("send " + topic));

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = await consumer.ReceiveAsync(timeout.Token);
        using (var process = consumer.StartProcessActivity(received))
        {
            Assert.NotNull(process);
            Assert.Same(process, Activity.Current);
            Assert.Equal(ActivityKind.Consumer, process.Kind);
            Assert.Equal(send.TraceId, process.TraceId);
            Assert.Equal(send.SpanId, process.ParentSpanId);
            Assert.Equal("g", process.GetTagItem("messaging.consumer.group.name"));
            await received.AckAsync();
        }

        Assert.Null(Activity.Current);
    }

    [Fact]
    public async Task A_trace_context_the_application_set_is_sent_as_it_is()
    {
        var topic = Topic("own");
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        const string Own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        var message = OutgoingMessage.FromText("x");
        message.Headers[BusDefaults.TraceParentHeader] = Own;
        await bus.PublishAsync(topic, message);

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal(Own, received.Headers[BusDefaults.TraceParentHeader]);
        await received.AckAsync();
    }

    [Fact]
    public async Task A_message_without_trace_context_is_not_made_a_child_of_the_subscribers_activity()
    {
        var topic = Topic("untraced");
        await using var bus = MessageBus.Create("memory://");
        var seen = new TaskCompletionSource<Activity?>(TaskCreationOptions.RunContinuationsAsynchronously);
        ISubscription subscription;
        using (Application.StartActivity("startup"))
        {
            subscription = await bus.SubscribeAsync(topic, (_, _) =>
            {
                seen.TrySetResult(Activity.Current);
                return default;
            }, SubscriptionOptions.ForGroup("g"));
        }

        await using var scope = subscription;
        // Straight to the transport, as a producer that does not use Bus would: the message carries no trace context.
        var message = OutgoingMessage.FromText("x");
        message.MessageId = "untraced-1";
        await bus.Transport.PublishAsync(topic, message, default);

        var current = await seen.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var startup = Assert.Single(Spans("startup"));
        Assert.NotNull(current);
        Assert.Equal("process " + topic, current.DisplayName);
        Assert.NotEqual(startup.TraceId, current.TraceId);
        Assert.Equal(default, current.ParentSpanId);
    }

    [Fact]
    public async Task Baggage_travels_with_the_message()
    {
        var topic = Topic("baggage");
        await using var bus = MessageBus.Create("memory://");
        var seen = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var subscription = await bus.SubscribeAsync(topic, (_, _) =>
        {
            seen.TrySetResult(Activity.Current?.GetBaggageItem("user"));
            return default;
        }, SubscriptionOptions.ForGroup("g"));
        using (var request = Application.StartActivity("request"))
        {
            request!.AddBaggage("user", "alice");
            await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        }

        Assert.Equal("alice", await seen.Task.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task A_failure_without_retries_is_recorded_once()
    {
        var topic = Topic("once");
        await using var bus = MessageBus.Create("memory://");
        await using var subscription = await bus.SubscribeAsync(topic, (_, _) => throw new InvalidOperationException("once"), new SubscriptionOptions { Group = "g", MaxDeliveries = 1 });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("poison"));

        var process = await WaitForSpanAsync("process " + topic);
        Assert.Equal(ActivityStatusCode.Error, process.Status);
        Assert.Equal(typeof(InvalidOperationException).FullName, process.GetTagItem("error.type"));
        Assert.Single(process.Events, e => e.Name == "exception");
    }

    [Fact]
    public async Task A_message_dead_lettered_after_its_retries_ends_its_process_span_as_an_error()
    {
        var topic = Topic("failing");
        await using var bus = MessageBus.Create("memory://");
        await using var subscription = await bus.SubscribeAsync(topic, (_, _) => throw new InvalidOperationException("always"), new SubscriptionOptions
        {
            Group = "g",
            MaxDeliveries = 2,
            RetryDelay = TimeSpan.FromMilliseconds(1),
            MaxRetryDelay = TimeSpan.FromMilliseconds(1),
        });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("poison"));

        var process = await WaitForSpanAsync("process " + topic);
        Assert.Equal(ActivityStatusCode.Error, process.Status);
        Assert.Equal("always", process.StatusDescription);
        Assert.Contains(process.Events, e => e.Name == "exception");
    }
}
