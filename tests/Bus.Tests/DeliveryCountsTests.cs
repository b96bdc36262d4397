using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>The delivery counts a transport keeps where its broker keeps none (Kafka) or only flags a redelivery (RabbitMQ classic queues).</summary>
public sealed class DeliveryCountsTests
{
    [Fact]
    public void Counts_rise_per_position_until_done_and_start_again_after()
    {
        var counts = new DeliveryCounts<string>().For("g", "t");
        Assert.Equal(1, counts.Next("a"));
        Assert.Equal(2, counts.Next("a"));
        Assert.Equal(1, counts.Next("b"));
        Assert.Equal(3, counts.Next("a"));
        counts.Done("a");
        Assert.Equal(1, counts.Next("a"));
        Assert.Equal(2, counts.Count);
    }

    [Fact]
    public void A_redelivery_counted_first_starts_at_two()
    {
        var counts = new DeliveryCounts<(int, long)>().For("g", "t");
        Assert.Equal(2, counts.Next((0, 7), whenUnknown: 2));
        Assert.Equal(3, counts.Next((0, 7), whenUnknown: 2));
    }

    [Fact]
    public void Receivers_of_one_group_and_topic_share_their_counts_and_no_others()
    {
        var counts = new DeliveryCounts<string>();
        Assert.Same(counts.For("g", "t"), counts.For("g", "t"));
        counts.For("g", "t").Next("m");
        Assert.Equal(2, counts.For("g", "t").Next("m"));
        Assert.Equal(1, counts.For("other", "t").Next("m"));
        Assert.Equal(1, counts.For("g", "other").Next("m"));
    }

    /// <summary>
    /// A message last delivered here and settled in another process is never done here: its entry goes once it has not
    /// been counted for the scope's limit (swept when a later delivery is counted), where it used to stay for good.
    /// </summary>
    [Fact]
    public async Task A_message_not_delivered_again_within_the_limit_is_forgotten()
    {
        var counts = new DeliveryCounts<string>(TimeSpan.FromMilliseconds(200)).For("g", "t");
        counts.Next("settled elsewhere");
        Assert.Equal(2, counts.Next("kept", whenUnknown: 2));
        await Task.Delay(TimeSpan.FromMilliseconds(300));
        Assert.Equal(3, counts.Next("kept", whenUnknown: 2)); // counted (and so refreshed) before this call's sweep
        Assert.Equal(1, counts.Count);
        Assert.Equal(1, counts.Next("settled elsewhere"));
    }

    [Fact]
    public void Limits_and_arguments_are_checked()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeliveryCounts<string>(TimeSpan.Zero));
        Assert.Equal(DeliveryCounts<string>.DefaultForgetAfter, new DeliveryCounts<string>().ForgetAfter);
        Assert.Throws<ArgumentNullException>(() => new DeliveryCounts<string>().For(null!, "t"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeliveryCounts<string>().For("g", "t").Next("m", whenUnknown: 0));
    }

    [Fact]
    public async Task Concurrent_deliveries_of_one_message_get_distinct_counts()
    {
        var counts = new DeliveryCounts<string>().For("g", "t");
        var seen = new System.Collections.Concurrent.ConcurrentBag<int>();
        await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 1_000; i++)
            {
                seen.Add(counts.Next("m"));
            }
        })));
        Assert.Equal(Enumerable.Range(1, 8_000), seen.Order());
    }
}
