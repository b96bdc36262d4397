using System.Collections.Concurrent;
using System.Threading.Channels;
using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// A subscription that is stopping hands nothing new to its handler: a message read as shutdown begins, handled,
/// could overtake an earlier message of its key that the stopping subscription left queued.
/// </summary>
public class ShutdownOrderTests
{
    private static SlowReadReceiver? _receiver;

    static ShutdownOrderTests() => BusTransports.Register(new DelegatingFactory("test-slow-read", inner => new SlowReadTransport(inner)));

    [Fact]
    public async Task A_message_read_while_the_subscription_stops_does_not_overtake_an_earlier_one_of_its_key()
    {
        // The slow read blocks a pool thread for half a second; on two cores the test's own continuations must not wait
        // for it to end, or the window this test needs closes before shutdown begins.
        ThreadPool.GetMinThreads(out var workers, out var io);
        ThreadPool.SetMinThreads(Math.Max(workers, 16), io);
        await using var bus = MessageBus.Create("test-slow-read://");
        var releaseFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var handled = new ConcurrentQueue<string>();
        var subscription = await bus.SubscribeAsync("t", async (message, _) =>
        {
            if (message.GetText() == "m1")
            {
                firstStarted.TrySetResult();
                await releaseFirst.Task;
            }

            handled.Enqueue(message.GetText());
        }, new SubscriptionOptions { Group = "g", MaxInFlight = 8, PerKeyOrdering = true });

        var receiver = _receiver!;
        receiver.SlowOn = "m3";
        receiver.Write(1);
        receiver.Write(2);
        // Signals, not delays: on a loaded machine a delay can end before the step it waits for.
        await firstStarted.Task.WaitAsync(TimeSpan.FromSeconds(10)); // m1 is being handled; m2 is read before m3, behind m1 (same key)
        receiver.Write(3); // the read loop is reading m3, slowly: it arrives as shutdown begins
        await receiver.SlowReadStarted.Task.WaitAsync(TimeSpan.FromSeconds(10));
        var disposing = subscription.DisposeAsync().AsTask();
        await Task.Delay(50);
        releaseFirst.SetResult(); // m1 completes while the subscription stops
        await disposing;

        Assert.Equal(["m1"], handled);
        Assert.Equal(["m1"], receiver.Acked);
    }

    private sealed class SlowReadTransport(MessageTransport inner) : DelegatingTransport(inner)
    {
        public override ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
            => new(_receiver = new SlowReadReceiver());
    }

    /// <summary>Deliveries written by the test, all of key K; reading <see cref="SlowOn"/> takes half a second.</summary>
    private sealed class SlowReadReceiver : TransportReceiver
    {
        private readonly Channel<ReceivedMessage> _inner = Channel.CreateUnbounded<ReceivedMessage>();

        public SlowReadReceiver() => Deliveries = new SlowReader(this);

        public ConcurrentQueue<string> Acked { get; } = new();

        public volatile string? SlowOn;

        public TaskCompletionSource SlowReadStarted { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override ChannelReader<ReceivedMessage> Deliveries { get; }

        public void Write(int n)
            => _inner.Writer.TryWrite(new ReceivedMessage("t", System.Text.Encoding.UTF8.GetBytes($"m{n}"), "K", null, $"id{n}", null, null, null, 1, n.ToString(System.Globalization.CultureInfo.InvariantCulture), DateTimeOffset.UtcNow, n));

        public override ValueTask AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
        {
            Acked.Enqueue(message.GetText());
            return default;
        }

        public override ValueTask NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken) => default;

        public override ValueTask DisposeAsync()
        {
            _inner.Writer.TryComplete();
            return default;
        }

        private sealed class SlowReader(SlowReadReceiver owner) : ChannelReader<ReceivedMessage>
        {
            public override bool TryRead([System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out ReceivedMessage item)
            {
                if (!owner._inner.Reader.TryRead(out item))
                {
                    return false;
                }

                if (item.GetText() == owner.SlowOn)
                {
                    owner.SlowReadStarted.TrySetResult();
                    Thread.Sleep(500);
                }

                return true;
            }

            public override ValueTask<bool> WaitToReadAsync(CancellationToken cancellationToken = default) => owner._inner.Reader.WaitToReadAsync(cancellationToken);
        }
    }
}
