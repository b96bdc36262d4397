using Bus.Internal;
using Xunit;

namespace Bus.Tests;

/// <summary>The consumer's lock-free max in-flight count: never more than its capacity out, and no waiter left behind.</summary>
public class InFlightSlotsTests
{
    [Fact]
    public async Task A_waiter_gets_the_slot_that_is_returned_and_a_cancelled_one_takes_none()
    {
        var slots = new InFlightSlots(1);
        Assert.True(slots.TryTake());
        Assert.False(slots.TryTake());

        using (var cancel = new CancellationTokenSource())
        {
            var cancelled = slots.TakeAsync(cancel.Token).AsTask();
            cancel.Cancel();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cancelled);
        }

        var waiting = slots.TakeAsync(CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        slots.Return();
        await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(1, slots.InUse);
        slots.Return();
        Assert.Equal(0, slots.InUse);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    [InlineData(16)]
    public async Task Competing_takers_never_hold_more_than_the_capacity_and_all_finish(int capacity)
    {
        var slots = new InFlightSlots(capacity);
        var held = 0;
        var most = 0;
        async Task Worker(int seed)
        {
            var random = new Random(seed);
            for (var i = 0; i < 2000; i++)
            {
                if (random.Next(4) == 0)
                {
                    if (!slots.TryTake())
                    {
                        continue;
                    }
                }
                else
                {
                    await slots.TakeAsync(CancellationToken.None);
                }

                var now = Interlocked.Increment(ref held);
                InterlockedMax(ref most, now);
                Assert.True(now <= capacity, $"{now} held with capacity {capacity}");
                if (random.Next(8) == 0)
                {
                    await Task.Yield();
                }

                Interlocked.Decrement(ref held);
                slots.Return();
            }
        }

        // Cancelled waiters mixed in: they must neither take a slot nor swallow the wake-up another waiter needs.
        async Task Canceller()
        {
            for (var i = 0; i < 200; i++)
            {
                using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(1));
                try
                {
                    await slots.TakeAsync(cancel.Token);
                    slots.Return();
                }
                catch (OperationCanceledException)
                {
                }
            }
        }

        var workers = Enumerable.Range(0, 6).Select(seed => Task.Run(() => Worker(seed))).Append(Task.Run(Canceller));
        await Task.WhenAll(workers).WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Equal(0, slots.InUse);
        Assert.True(most <= capacity);
        Assert.True(most >= 1);
    }

    private static void InterlockedMax(ref int target, int value)
    {
        var current = Volatile.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}
