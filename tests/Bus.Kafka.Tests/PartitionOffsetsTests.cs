using Bus.Kafka.Internal;
using Xunit;

namespace Bus.Kafka.Tests;

/// <summary>The contiguous-prefix commit rule, without a broker.</summary>
public sealed class PartitionOffsetsTests
{
    [Fact]
    public void Nothing_fetched_commits_the_start()
    {
        var offsets = new PartitionOffsets(42);
        Assert.Equal(42, offsets.Committable);
        Assert.Null(offsets.Ack(42));
    }

    [Fact]
    public void In_order_acks_advance_one_by_one()
    {
        var offsets = new PartitionOffsets(0);
        offsets.Fetched(0);
        offsets.Fetched(1);
        Assert.Equal(0, offsets.Committable);
        Assert.Equal(1, offsets.Ack(0));
        Assert.Equal(2, offsets.Ack(1));
        Assert.Equal(0, offsets.Pending);
    }

    [Fact]
    public void An_unacked_message_holds_back_the_commit_of_everything_after_it()
    {
        var offsets = new PartitionOffsets(10);
        for (long o = 10; o < 15; o++)
        {
            offsets.Fetched(o);
        }

        // 11..14 done, 10 still out (in flight, nacked or waiting behind its key): nothing may be committed.
        Assert.Null(offsets.Ack(12));
        Assert.Null(offsets.Ack(14));
        Assert.Null(offsets.Ack(11));
        Assert.Null(offsets.Ack(13));
        Assert.Equal(10, offsets.Committable);

        // 10 done: the whole prefix goes at once.
        Assert.Equal(15, offsets.Ack(10));
    }

    [Fact]
    public void A_gap_in_the_middle_stops_the_prefix_there()
    {
        var offsets = new PartitionOffsets(0);
        for (long o = 0; o < 6; o++)
        {
            offsets.Fetched(o);
        }

        Assert.Equal(1, offsets.Ack(0));
        Assert.Equal(2, offsets.Ack(1));
        Assert.Null(offsets.Ack(3));
        Assert.Null(offsets.Ack(5));
        Assert.Equal(2, offsets.Committable);
        Assert.Equal(4, offsets.Ack(2));
        Assert.Equal(6, offsets.Ack(4));
    }

    [Fact]
    public void Offsets_missing_from_the_log_are_no_obstacle()
    {
        // Compaction or transaction markers leave holes between fetched offsets.
        var offsets = new PartitionOffsets(0);
        offsets.Fetched(3);
        offsets.Fetched(7);
        Assert.Equal(3, offsets.Committable);
        Assert.Equal(7, offsets.Ack(3));
        Assert.Equal(8, offsets.Ack(7));
    }

    [Fact]
    public void Unknown_and_repeated_acks_are_ignored()
    {
        var offsets = new PartitionOffsets(0);
        offsets.Fetched(0);
        offsets.Fetched(1);
        Assert.Null(offsets.Ack(99));
        Assert.Equal(1, offsets.Ack(0));
        Assert.Null(offsets.Ack(0));
        Assert.Equal(1, offsets.Committable);
    }

    [Fact]
    public void Random_ack_orders_never_commit_past_an_unacked_offset()
    {
        var random = new Random(7);
        for (var round = 0; round < 200; round++)
        {
            var offsets = new PartitionOffsets(100);
            var count = random.Next(1, 40);
            for (var i = 0; i < count; i++)
            {
                offsets.Fetched(100 + i);
            }

            var order = Enumerable.Range(0, count).OrderBy(_ => random.Next()).ToList();
            var acked = new HashSet<long>();
            long committed = 100;
            foreach (var i in order)
            {
                acked.Add(100 + i);
                if (offsets.Ack(100 + i) is { } next)
                {
                    Assert.True(next > committed);
                    committed = next;
                }

                // Everything below the committable offset is acknowledged; the offset itself is not (or is the end).
                for (var o = 100L; o < committed; o++)
                {
                    Assert.Contains(o, acked);
                }

                Assert.True(committed == 100 + count || !acked.Contains(committed));
            }

            Assert.Equal(100 + count, committed);
        }
    }
    [Fact]
    public void A_lower_offset_after_a_fetch_position_reset_is_placed_in_order()
    {
        var offsets = new PartitionOffsets(5);
        offsets.Fetched(5);
        offsets.Fetched(9);
        offsets.Fetched(7);
        offsets.Fetched(7);
        Assert.Equal(3, offsets.Pending);
        Assert.Null(offsets.Ack(7));
        Assert.Equal(9, offsets.Ack(5));
        Assert.Equal(10, offsets.Ack(9));
    }

    [Fact]
    public void One_stuck_message_does_not_make_the_window_grow_with_the_traffic_after_it()
    {
        // Offset 0 is held (a hung handler, a long nack delay) while a million later messages are done.
        var offsets = new PartitionOffsets(0);
        offsets.Fetched(0);
        for (long o = 1; o <= 1_000_000; o++)
        {
            offsets.Fetched(o);
            Assert.Null(offsets.Ack(o));
        }

        Assert.Equal(1, offsets.Pending);
        Assert.True(offsets.Capacity <= 128, $"capacity {offsets.Capacity}");
        Assert.Equal(1_000_001, offsets.Ack(0));
    }

    [Fact]
    public void A_window_that_grew_with_many_pending_shrinks_when_they_are_done()
    {
        var offsets = new PartitionOffsets(0);
        for (long o = 0; o < 100_000; o++)
        {
            offsets.Fetched(o);
        }

        var grown = offsets.Capacity;
        for (long o = 1; o < 100_000; o++)
        {
            offsets.Ack(o);
        }

        for (long o = 100_000; o < 300_000; o++)
        {
            offsets.Fetched(o);
            offsets.Ack(o);
        }

        Assert.True(offsets.Capacity < grown / 100, $"capacity {offsets.Capacity} after {grown}");
        Assert.Equal(300_000, offsets.Ack(0));
    }

    /// <summary>
    /// Thousands of messages out at once, settled in random order, with now and then an offset fetched again: the same
    /// answers as a sorted set of pending offsets (the structure this one replaced) at every step, while the window
    /// slides and grows.
    /// </summary>
    [Fact]
    public void Agrees_with_a_sorted_set_model_over_long_random_runs()
    {
        var random = new Random(11);
        for (var round = 0; round < 20; round++)
        {
            var offsets = new PartitionOffsets(1_000);
            var model = new SortedSet<long>();
            long next = 1_000, lastReported = 1_000, fetchedUpTo = 1_000;
            var outstanding = new List<long>();
            for (var step = 0; step < 20_000; step++)
            {
                var roll = random.Next(100);
                if (roll < 50 || outstanding.Count == 0)
                {
                    // Fetch the next offset, sometimes skipping some (compaction), rarely one fetched before.
                    var offset = roll == 1 && fetchedUpTo > 1_000 ? fetchedUpTo - 1 - random.Next((int)Math.Min(50, fetchedUpTo - 1_000)) : fetchedUpTo + random.Next(3);
                    fetchedUpTo = Math.Max(fetchedUpTo, offset + 1);
                    offsets.Fetched(offset);
                    if (model.Add(offset))
                    {
                        outstanding.Add(offset);
                    }

                    next = Math.Max(next, offset + 1);
                }
                else
                {
                    var pick = random.Next(outstanding.Count);
                    var offset = outstanding[pick];
                    outstanding[pick] = outstanding[^1];
                    outstanding.RemoveAt(outstanding.Count - 1);
                    long? expected = null;
                    if (model.Remove(offset))
                    {
                        var committable = model.Count > 0 ? model.Min : next;
                        if (committable > lastReported)
                        {
                            lastReported = committable;
                            expected = committable;
                        }
                    }

                    Assert.Equal(expected, offsets.Ack(offset));
                }

                Assert.Equal(model.Count, offsets.Pending);
                Assert.Equal(model.Count > 0 ? model.Min : next, offsets.Committable);
            }
        }
    }
}
