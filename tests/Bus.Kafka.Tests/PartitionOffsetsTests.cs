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
}
