using Bus.Transport;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bus.Tests;

public class SettlementBatcherTests
{
    [Fact]
    public async Task A_lone_item_is_sent_at_once_in_a_batch_of_its_own()
    {
        var flushed = new List<int[]>();
        await using var batcher = new SettlementBatcher<int>(items =>
        {
            lock (flushed)
            {
                flushed.Add([.. items]);
            }

            return ValueTask.FromResult<IReadOnlyList<Exception?>?>(null);
        }, new SettlementBatcherOptions { MaxBatchSize = 10, Linger = TimeSpan.FromHours(1) });

        // An hour of linger: completing proves the item did not wait for it.
        await batcher.AddAsync(7).AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal([7], Assert.Single(flushed));
    }

    [Fact]
    public async Task Items_that_arrive_while_a_batch_is_in_flight_go_together_in_the_next()
    {
        var release = new TaskCompletionSource();
        var flushed = new List<int[]>();
        await using var batcher = new SettlementBatcher<int>(async items =>
        {
            lock (flushed)
            {
                flushed.Add([.. items]);
            }

            await release.Task;
            return null;
        }, new SettlementBatcherOptions { MaxBatchSize = 100 });

        var first = batcher.AddAsync(0);
        var rest = Enumerable.Range(1, 5).Select(i => batcher.AddAsync(i).AsTask()).ToArray();
        release.SetResult();
        await first;
        await Task.WhenAll(rest).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { new[] { 0 }, [1, 2, 3, 4, 5] }, flushed);
    }

    [Fact]
    public async Task A_failed_item_fails_only_its_own_caller_and_a_throwing_flush_fails_the_whole_batch()
    {
        var release = new TaskCompletionSource();
        var calls = 0;
        await using var batcher = new SettlementBatcher<string>(async items =>
        {
            switch (Interlocked.Increment(ref calls))
            {
                case 1:
                    await release.Task; // holds the only slot, so that the next two share a batch
                    return null;
                case 2:
                    return items.Select(i => i == "bad" ? new InvalidOperationException(i) : null).ToArray();
                default:
                    throw new TimeoutException("broker");
            }
        }, new SettlementBatcherOptions { MaxBatchSize = 10, MaxConcurrentFlushes = 1 });

        var holding = batcher.AddAsync("hold").AsTask();
        var good = batcher.AddAsync("good").AsTask();
        var bad = batcher.AddAsync("bad").AsTask();
        release.SetResult();
        await holding;
        await good;
        Assert.Equal("bad", (await Assert.ThrowsAsync<InvalidOperationException>(() => bad)).Message);
        await Assert.ThrowsAsync<TimeoutException>(() => batcher.AddAsync("later").AsTask());
        Assert.Equal(3, calls);
    }

    [Fact]
    public async Task Items_added_without_waiting_are_batched_alike_and_dispose_waits_until_they_are_sent()
    {
        var release = new TaskCompletionSource();
        var flushed = new List<int[]>();
        var batcher = new SettlementBatcher<int>(async items =>
        {
            lock (flushed)
            {
                flushed.Add([.. items]);
            }

            await release.Task;
            throw new InvalidOperationException("the broker said no"); // nobody awaits these items: not an unobserved task
        }, new SettlementBatcherOptions { MaxBatchSize = 100 });

        for (var i = 0; i < 6; i++)
        {
            batcher.Add(i); // returns at once, although the first batch is still in flight
        }

        var disposed = batcher.DisposeAsync().AsTask();
        Assert.False(disposed.IsCompleted);
        release.SetResult();
        await disposed.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(new[] { new[] { 0 }, [1, 2, 3, 4, 5] }, flushed);
        Assert.Throws<ObjectDisposedException>(() => batcher.Add(6));
    }

    [Fact]
    public async Task Dispose_sends_what_is_waiting_and_then_refuses_more()
    {
        var release = new TaskCompletionSource();
        var sent = new List<int>();
        var batcher = new SettlementBatcher<int>(async items =>
        {
            await release.Task;
            lock (sent)
            {
                sent.AddRange(items);
            }

            return null;
        }, new SettlementBatcherOptions { MaxBatchSize = 4 });

        var pending = Enumerable.Range(0, 6).Select(i => batcher.AddAsync(i).AsTask()).ToArray();
        var disposing = batcher.DisposeAsync().AsTask();
        Assert.False(disposing.IsCompleted);
        release.SetResult();
        await disposing.WaitAsync(TimeSpan.FromSeconds(10));
        await Task.WhenAll(pending);
        Assert.Equal(Enumerable.Range(0, 6), sent.Order());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => batcher.AddAsync(99).AsTask());
    }

    /// <summary>
    /// Whatever the batch size, concurrency, linger and number of concurrent producers: every item is sent exactly
    /// once, no batch exceeds the size, no more flushes run at once than allowed, and every caller completes.
    /// </summary>
    [Property(MaxTest = 40)]
    public Property Every_item_is_sent_once_within_the_limits()
    {
        var shapes = from size in Gen.Choose(1, 12)
                     from concurrency in Gen.Choose(1, 4)
                     from lingerMs in Gen.Elements(0, 1, 5)
                     from producers in Gen.Choose(1, 4)
                     from perProducer in Gen.Choose(0, 60)
                     select (size, concurrency, lingerMs, producers, perProducer);
        return Prop.ForAll(shapes.ToArbitrary(), shape =>
        {
            var (size, concurrency, lingerMs, producers, perProducer) = shape;
            var seen = new List<int>();
            var running = 0;
            var maxRunning = 0;
            var oversize = false;
            var batcher = new SettlementBatcher<int>(async items =>
            {
                var now = Interlocked.Increment(ref running);
                InterlockedMax(ref maxRunning, now);
                oversize |= items.Count > size;
                await Task.Yield();
                lock (seen)
                {
                    seen.AddRange(items);
                }

                Interlocked.Decrement(ref running);
                return null;
            }, new SettlementBatcherOptions { MaxBatchSize = size, MaxConcurrentFlushes = concurrency, Linger = TimeSpan.FromMilliseconds(lingerMs) });

            var producing = Enumerable.Range(0, producers).Select(p => Task.Run(async () =>
            {
                var mine = new List<Task>();
                for (var i = 0; i < perProducer; i++)
                {
                    mine.Add(batcher.AddAsync((p * 1_000) + i).AsTask());
                }

                await Task.WhenAll(mine);
            })).ToArray();
            var completed = Task.WhenAll(producing).Wait(TimeSpan.FromSeconds(20));
            batcher.DisposeAsync().AsTask().Wait(TimeSpan.FromSeconds(20));
            var expected = Enumerable.Range(0, producers).SelectMany(p => Enumerable.Range(p * 1_000, perProducer)).Order().ToArray();
            return (completed && !oversize && maxRunning <= concurrency && seen.Order().SequenceEqual(expected))
                .Label($"completed={completed} oversize={oversize} maxRunning={maxRunning} sent={seen.Count}/{expected.Length}");
        });
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while (value > (current = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
