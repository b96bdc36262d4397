using System.Diagnostics;
using Xunit;

namespace Bus.Tests;

[Collection(ActivityListeners.Name)]
/// <summary>A trace listener that throws (an exporter's bug) costs spans, never messages.</summary>
public sealed class TracingListenerFaultTests
{
    [Fact]
    public async Task A_listener_that_throws_as_a_process_span_starts_does_not_stall_the_key()
    {
        var topic = $"throwing-listener-{Guid.NewGuid():N}";
        var thrown = 0;
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Bus",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStarted = a =>
            {
                if (a.DisplayName == "process " + topic && Interlocked.Exchange(ref thrown, 1) == 0)
                {
                    throw new InvalidOperationException("exporter bug");
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        var (handled, _) = await PublishThreeOfOneKeyAsync(topic);
        lock (handled)
        {
            Assert.True(handled.Count == 3, $"handled after a listener threw once: [{string.Join(", ", handled)}]");
        }
    }

    [Fact]
    public async Task A_listener_that_throws_as_spans_stop_neither_fails_a_sent_publish_nor_stalls_the_key()
    {
        var topic = $"throwing-stop-{Guid.NewGuid():N}";
        var sendThrown = 0;
        var processThrown = 0;
        using var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "Bus",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if (a.DisplayName == "send " + topic && Interlocked.Exchange(ref sendThrown, 1) == 0)
                {
                    throw new InvalidOperationException("exporter bug (send)");
                }

                if (a.DisplayName == "process " + topic && Interlocked.Exchange(ref processThrown, 1) == 0)
                {
                    throw new InvalidOperationException("exporter bug (process)");
                }
            },
        };
        ActivitySource.AddActivityListener(listener);

        var (handled, publishError) = await PublishThreeOfOneKeyAsync(topic);
        lock (handled)
        {
            Assert.True(publishError is null && handled.Count == 3, $"publish of 'one' threw: {publishError?.Message}; handled: [{string.Join(", ", handled)}]");
        }
    }

    /// <summary>
    /// Publishes "one", "two" and "three" of one key to a subscription that records what it handles, and waits (up to
    /// 5 s) until all three are handled. Returns what was handled and what the first publish threw, if anything.
    /// </summary>
    private static async Task<(List<string> Handled, Exception? FirstPublishError)> PublishThreeOfOneKeyAsync(string topic)
    {
        await using var bus = MessageBus.Create("memory://");
        var handled = new List<string>();
        await using var subscription = await bus.SubscribeAsync(topic, (m, _) =>
        {
            lock (handled)
            {
                handled.Add(m.GetText());
            }

            return default;
        }, SubscriptionOptions.ForGroup("g"));

        var error = await Record.ExceptionAsync(async () => await bus.PublishAsync(topic, OutgoingMessage.FromText("one", key: "k")));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("two", key: "k"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("three", key: "k"));
        await WaitForAsync(() => { lock (handled) { return handled.Count == 3; } });
        return (handled, error);
    }

    private static async Task WaitForAsync(Func<bool> condition)
    {
        for (var waited = 0; waited < 5_000 && !condition(); waited += 20)
        {
            await Task.Delay(20);
        }
    }
}
