using static Bus.Conformance.CaseContext;

namespace Bus.Conformance.Cases;

/// <summary>replay: a new group reads what was published before it existed.</summary>
internal static class ReplayCases
{
    public static IEnumerable<ConformanceCase> All =>
    [
        new("from_earliest", "replay", BusFeatures.Replay, "a new group from earliest receives all 50, in order", FromEarliest),
        new("from_position_or_time", "replay", BusFeatures.None, "a new group from message 21's position (or time) receives 21..50", FromPositionOrTime)
        {
            RequiresAny = BusFeatures.ReplayFromPosition | BusFeatures.ReplayFromTime,
        },
        new("from_time", "replay", BusFeatures.ReplayFromTime, "a new group from the time just before message 21 receives 21..50", FromTime),
    ];

    private static async Task<List<OutgoingMessage>> PublishFiftyAsync(CaseContext ctx, string topic, Func<int, Task>? before = null)
    {
        var sent = new List<OutgoingMessage>();
        for (var i = 1; i <= 50; i++)
        {
            if (before is not null)
            {
                await before(i);
            }

            var message = Numbered($"m{i}", "replay", i);
            await ctx.Bus.PublishAsync(topic, message);
            sent.Add(message);
        }

        return sent;
    }

    private static async Task<List<int>> ReadAsync(CaseContext ctx, string topic, StartPosition start, int count)
    {
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = ctx.Group("replay"), StartPosition = start, MaxInFlight = 64 });
        var sequences = new List<int>();
        while (sequences.Count < count)
        {
            var message = await ctx.ReceiveAsync(consumer, $"replayed message {sequences.Count + 1} of {count}");
            sequences.Add(SequenceOf(message));
            await message.AckAsync();
        }

        Check(await ctx.ReceiveWithinAsync(consumer, TimeSpan.FromMilliseconds(500)) is null, "more messages than expected were replayed");
        return sequences;
    }

    private static async Task FromEarliest(CaseContext ctx)
    {
        var topic = ctx.Topic("earliest");
        await ctx.Bus.EnsureTopicAsync(topic);
        await PublishFiftyAsync(ctx, topic);
        var sequences = await ReadAsync(ctx, topic, StartPosition.Earliest, 50);
        Check(sequences.SequenceEqual(Enumerable.Range(1, 50)), $"replayed {string.Join(",", sequences)}");
    }

    private static async Task FromPositionOrTime(CaseContext ctx)
    {
        var topic = ctx.Topic("position");
        await ctx.Bus.EnsureTopicAsync(topic);
        StartPosition start;
        if (ctx.Capabilities.Supports(BusFeatures.ReplayFromPosition))
        {
            await PublishFiftyAsync(ctx, topic);
            // Learn message 21's position the way an application would: from a delivery.
            await using var reader = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = ctx.Group("reader"), StartPosition = StartPosition.Earliest, MaxInFlight = 64 });
            string? position = null;
            while (position is null)
            {
                var message = await ctx.ReceiveAsync(reader, "message 21");
                if (SequenceOf(message) == 21)
                {
                    position = message.Position;
                }

                await message.AckAsync();
            }

            start = StartPosition.At(position);
            ctx.Note("by position");
        }
        else
        {
            start = StartPosition.AtTime(await PublishFiftyRecordingTimeAsync(ctx, topic));
            ctx.Note("by time: " + ctx.Capabilities.ExplainMissing(BusFeatures.ReplayFromPosition));
        }

        var sequences = await ReadAsync(ctx, topic, start, 30);
        Check(sequences.SequenceEqual(Enumerable.Range(21, 30)), $"replayed {string.Join(",", sequences)}, expected 21..50");
    }

    /// <summary>
    /// By time, also where positions exist (from_position_or_time then replays by position, and the time was never
    /// shown on a backend that declares both).
    /// </summary>
    private static async Task FromTime(CaseContext ctx)
    {
        var topic = ctx.Topic("time");
        await ctx.Bus.EnsureTopicAsync(topic);
        var at = await PublishFiftyRecordingTimeAsync(ctx, topic);
        var sequences = await ReadAsync(ctx, topic, StartPosition.AtTime(at), 30);
        Check(sequences.SequenceEqual(Enumerable.Range(21, 30)), $"replayed {string.Join(",", sequences)}, expected 21..50");
    }

    /// <summary>Publishes the fifty, with a pause of 50 ms on each side of the time it returns, just before message 21.</summary>
    private static async Task<DateTimeOffset> PublishFiftyRecordingTimeAsync(CaseContext ctx, string topic)
    {
        var at = DateTimeOffset.MinValue;
        await PublishFiftyAsync(ctx, topic, async i =>
        {
            if (i == 21)
            {
                await Task.Delay(50);
                at = DateTimeOffset.UtcNow;
                await Task.Delay(50);
            }
        });
        return at;
    }
}
