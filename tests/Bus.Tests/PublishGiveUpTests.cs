using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// A batch publish that gives up (operation timeout, or the caller's cancellation) returns only once a transport that
/// does not bound its own time has stopped reading the caller's messages: the caller may reuse them at once.
/// </summary>
public class PublishGiveUpTests
{
    static PublishGiveUpTests() => BusTransports.Register(new DelegatingFactory("test-slow-batch", inner => new SlowBatch(inner)));

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_batch_publish_that_gives_up_leaves_the_callers_messages_alone(bool cancelled)
    {
        await using var bus = MessageBus.Create(new BusOptions { Url = "test-slow-batch://", OperationTimeout = TimeSpan.FromMilliseconds(cancelled ? 30_000 : 300) });
        var transport = (SlowBatch)bus.Transport;
        var messages = Enumerable.Range(0, 1_000).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();
        using var caller = new CancellationTokenSource(cancelled ? TimeSpan.FromMilliseconds(300) : Timeout.InfiniteTimeSpan);

        var error = await Assert.ThrowsAnyAsync<Exception>(async () => await bus.PublishBatchAsync("t", messages, caller.Token));
        var readWhenItEnded = transport.Read;

        Assert.True(cancelled ? error is OperationCanceledException : error is BusException { Reason: BusFailureReason.Timeout }, error.ToString());
        Assert.InRange(readWhenItEnded, 1, messages.Count - 1);
        Assert.True(transport.Stopped.IsCompleted, "the transport was still reading when the call ended");
        await Task.Delay(300);
        Assert.Equal(readWhenItEnded, transport.Read);
    }

    /// <summary>Reads the batch's messages one by one, 10 ms apart, until told to stop; never bounds its own time.</summary>
    private sealed class SlowBatch(MessageTransport inner) : DelegatingTransport(inner)
    {
        private readonly TaskCompletionSource _stopped = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _read;

        public int Read => Volatile.Read(ref _read);

        public Task Stopped => _stopped.Task;

        public override bool BoundsPublishTime => false;

        public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
        {
            try
            {
                foreach (var message in messages)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    _ = message.Body.Length;
                    Interlocked.Increment(ref _read);
                    await Task.Delay(10, cancellationToken);
                }
            }
            finally
            {
                _stopped.TrySetResult();
            }
        }
    }
}
