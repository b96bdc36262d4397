using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;
using Xunit;

namespace Bus.Redis.Tests;

/// <summary>Redis-specific behaviour against the real server: trimming, databases, the entry layout, raw-client interop.</summary>
public sealed class RedisIntegrationTests(RedisFixture fixture) : IClassFixture<RedisFixture>, IAsyncLifetime
{
    private static readonly TimeSpan Wait = TimeSpan.FromSeconds(10);
    private ConnectionMultiplexer? _raw;

    private ConnectionMultiplexer Raw => _raw!;

    public async Task InitializeAsync() => _raw = await ConnectionMultiplexer.ConnectAsync($"{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}");

    public async Task DisposeAsync()
    {
        if (_raw is not null)
        {
            await _raw.DisposeAsync();
        }
    }

    private static string Unique(string hint) => $"it-{hint}-{Guid.NewGuid():N}"[..24];

    private IMessageBus CreateBus(string query = "", string path = "", ILoggerFactory? logs = null)
        => MessageBus.Create(new BusOptions { Url = $"redis://{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}{path}{query}" }, logs);

    private static async Task<ReceivedMessage> ReceiveAsync(MessageConsumer consumer)
    {
        using var timeout = new CancellationTokenSource(Wait);
        return await consumer.ReceiveAsync(timeout.Token);
    }

    /// <summary>
    /// A batch whose delayed messages Redis refuses (their sorted set's key holds a string: WRONGTYPE) fails, and its
    /// exception lists exactly those; the immediate ones around them were stored and are delivered.
    /// </summary>
    [Fact]
    public async Task A_batch_redis_partly_refuses_lists_the_refused_messages()
    {
        await using var bus = CreateBus();
        var topic = Unique("refused");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        await Raw.GetDatabase().StringSetAsync(topic + "#delayed", "not a sorted set");
        var messages = Enumerable.Range(0, 6).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();
        messages[1].Delay = TimeSpan.FromSeconds(1);
        messages[4].Delay = TimeSpan.FromSeconds(1);

        var error = await Assert.ThrowsAsync<PublishBatchException>(async () => await bus.PublishBatchAsync(topic, messages));

        Assert.Equal([messages[1], messages[4]], error.UnconfirmedMessages);
        Assert.Contains("WRONGTYPE", error.ToString(), StringComparison.Ordinal);
        // The receiver moves due delayed messages before each read, and backs off while that fails.
        await Raw.GetDatabase().KeyDeleteAsync(topic + "#delayed");
        var received = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var message = await ReceiveAsync(consumer);
            received.Add(message.MessageId);
            await message.AckAsync();
        }

        Assert.Equal(new[] { 0, 2, 3, 5 }.Select(i => messages[i].MessageId), received);
    }

    /// <summary>
    /// The receive loop sends the acks, just before its reads. While it pauses after failures (3.2 s after the sixth in
    /// a row), an ack given meanwhile must still go out at once, or an entry acked during a pause longer than the ack
    /// timeout would be delivered again. The ack is looked for within 2 s of the sixth failure's log line: well inside
    /// the pause, with room for a test process starved for a while.
    /// </summary>
    [Fact]
    public async Task An_ack_given_while_the_receiver_pauses_after_failures_is_sent_during_the_pause()
    {
        var logs = new LogLines();
        await using var bus = CreateBus(logs: logs);
        var topic = Unique("pause");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("held"));
        var message = await ReceiveAsync(consumer);
        var db = Raw.GetDatabase();

        // Each pass of the loop looks at the delay set first; a string under its key fails every pass (WRONGTYPE),
        // and the loop pauses 0.1, 0.2, 0.4, 0.8, 1.6, 3.2 s ... between passes.
        await db.StringSetAsync(topic + "#delayed", "not a sorted set");
        await WaitForAsync(() => logs.Lines.Count(line => line.StartsWith("Warning 3013 ", StringComparison.Ordinal) && line.Contains(topic, StringComparison.Ordinal)) >= 6);
        await message.AckAsync();

        var acked = false;
        for (var i = 0; i < 40 && !acked; i++)
        {
            acked = (await db.StreamPendingAsync(topic, "g")).PendingMessageCount == 0;
            if (!acked)
            {
                await Task.Delay(50);
            }
        }

        Assert.True(acked, "the XACK waited for the end of the pause");
        await db.KeyDeleteAsync(topic + "#delayed");
    }

    [Fact]
    public async Task Exact_maxlen_trimming_keeps_the_newest_entries()
    {
        await using var bus = CreateBus("?trim-maxlen=10&trim-exact=true");
        var topic = Unique("trim");
        for (var i = 0; i < 50; i++)
        {
            await bus.PublishAsync(topic, OutgoingMessage.FromText($"m{i}"));
        }

        var db = Raw.GetDatabase();
        Assert.Equal(10, await db.StreamLengthAsync(topic));
        var first = (await db.StreamRangeAsync(topic, count: 1)).Single();
        Assert.Equal("m40", Encoding.UTF8.GetString((byte[])first["body"]!));
    }

    [Fact]
    public async Task Approximate_maxlen_trimming_bounds_the_stream()
    {
        await using var bus = CreateBus("?trim-maxlen=100");
        var topic = Unique("trim-approx");
        await bus.PublishBatchAsync(topic, Enumerable.Range(0, 1000).Select(i => OutgoingMessage.FromText($"m{i}")).ToList());
        var length = await Raw.GetDatabase().StreamLengthAsync(topic);
        // "~" trims whole radix-tree nodes (100 entries each by default): at least 100 stay, far fewer than 1000.
        Assert.InRange(length, 100, 300);
    }

    [Fact]
    public async Task Age_trimming_removes_older_entries()
    {
        await using var bus = CreateBus("?trim-max-age=1s&trim-exact=true");
        var topic = Unique("trim-age");
        await bus.PublishAsync(topic, OutgoingMessage.FromText("old"));
        await Task.Delay(1500);
        await bus.PublishAsync(topic, OutgoingMessage.FromText("new"));
        var entries = await Raw.GetDatabase().StreamRangeAsync(topic);
        Assert.Equal(["new"], entries.Select(e => Encoding.UTF8.GetString((byte[])e["body"]!)));
    }

    [Fact]
    public async Task No_trimming_by_default()
    {
        await using var bus = CreateBus();
        var topic = Unique("no-trim");
        await bus.PublishBatchAsync(topic, Enumerable.Range(0, 500).Select(i => OutgoingMessage.FromText($"m{i}")).ToList());
        Assert.Equal(500, await Raw.GetDatabase().StreamLengthAsync(topic));
    }

    [Fact]
    public async Task Database_number_from_the_path_is_used()
    {
        await using var bus = CreateBus(path: "/3");
        var topic = Unique("db");
        await bus.PublishAsync(topic, OutgoingMessage.FromText("in db 3"));
        Assert.Equal(1, await Raw.GetDatabase(3).StreamLengthAsync(topic));
        Assert.False(await Raw.GetDatabase(0).KeyExistsAsync(topic));
    }

    [Fact]
    public async Task Entry_layout_is_readable_by_the_raw_client()
    {
        await using var bus = CreateBus();
        var topic = Unique("layout");
        var message = new OutgoingMessage(new byte[] { 0, 255, 1 }) { Key = "k-ü", CorrelationId = "c1", ContentType = "application/octet-stream", ReplyTo = "replies" };
        message.Headers["h-utf8"] = "ünïcødé ✓";
        await bus.PublishAsync(topic, message);
        var entry = (await Raw.GetDatabase().StreamRangeAsync(topic)).Single();
        Assert.Equal(new byte[] { 0, 255, 1 }, (byte[])entry["body"]!);
        Assert.Equal(message.MessageId, (string?)entry["id"]);
        Assert.Equal("k-ü", (string?)entry["key"]);
        Assert.Equal("c1", (string?)entry["correlation-id"]);
        Assert.Equal("application/octet-stream", (string?)entry["content-type"]);
        Assert.Equal("replies", (string?)entry["reply-to"]);
        Assert.Equal("ünïcødé ✓", (string?)entry["h:h-utf8"]);
    }

    [Fact]
    public async Task Entries_added_by_the_raw_client_are_read_through_the_bus()
    {
        await using var bus = CreateBus();
        var topic = Unique("interop");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        var db = Raw.GetDatabase();
        var withLayout = await db.StreamAddAsync(topic, [
            new("body", new byte[] { 9, 8, 7 }), new("id", "raw-1"), new("key", "k"), new("content-type", "x/y"), new("h:trace", "abc")]);
        var foreign = await db.StreamAddAsync(topic, [new("temperature", "21.5"), new("room", "kitchen")]);

        var first = await ReceiveAsync(consumer);
        Assert.Equal(new byte[] { 9, 8, 7 }, first.Body.ToArray());
        Assert.Equal("raw-1", first.MessageId);
        Assert.Equal("k", first.Key);
        Assert.Equal("x/y", first.ContentType);
        Assert.Equal("abc", first.Headers["trace"]);
        Assert.Equal((string?)withLayout, first.Position);
        Assert.Equal(1, first.DeliveryCount);
        await first.AckAsync();

        // Not written by Bus: the entry id stands in for the message id, and every field becomes a header.
        var second = await ReceiveAsync(consumer);
        Assert.Equal((string?)foreign, second.MessageId);
        Assert.Equal((string?)foreign, second.Position);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(((string?)foreign)!.Split('-')[0], System.Globalization.CultureInfo.InvariantCulture)), second.Timestamp);
        Assert.True(second.Body.IsEmpty);
        Assert.Equal("21.5", second.Headers["temperature"]);
        Assert.Equal("kitchen", second.Headers["room"]);
        await second.AckAsync();

        Assert.Empty(await PendingIdsAfterAsync(db, topic, "g", ids => ids.Length == 0));
    }

    /// <summary>
    /// A handler that holds messages while it waits for the next one (a batcher) must still get it while any credit is
    /// free. Entries come from the raw client, so no local publish wakes the consumer.
    /// </summary>
    [Fact]
    public async Task A_consumer_holding_more_than_half_its_credit_still_receives_what_is_free()
    {
        await using var bus = CreateBus("?poll-max-delay=50");
        var topic = Unique("refill");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 4 });
        var db = Raw.GetDatabase();
        await AddEntriesAsync(db, topic, 0, 3);
        var held = await ReceiveManyAsync(consumer, 3);

        // One credit of four is free.
        await AddEntriesAsync(db, topic, 3, 2);
        var fourth = await ReceiveAsync(consumer);
        Assert.Equal("m3", fourth.MessageId);
        held.Add(fourth);

        // The hand is full: the fifth comes once something is settled.
        await held[0].AckAsync();
        var fifth = await ReceiveAsync(consumer);
        Assert.Equal("m4", fifth.MessageId);
        held.Add(fifth);
        Assert.Equal(["m0", "m1", "m2", "m3", "m4"], held.Select(m => m.MessageId));
        foreach (var message in held.Skip(1))
        {
            await message.AckAsync();
        }

        Assert.Empty(await PendingIdsAfterAsync(db, topic, "g", ids => ids.Length == 0));
    }

    /// <summary>
    /// With a poll delay far longer than the wait, what makes the consumer read again is the settlement itself: the
    /// first ack from a full hand, and a nack without delay (whose redelivery needs only the credit it freed).
    /// </summary>
    [Fact]
    public async Task A_settlement_from_a_full_hand_wakes_the_consumer_without_waiting_for_the_poll_delay()
    {
        await using var bus = CreateBus("?poll-max-delay=30000");
        var topic = Unique("full-hand");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 4 });
        await AddEntriesAsync(Raw.GetDatabase(), topic, 0, 5);
        var held = await ReceiveManyAsync(consumer, 4);

        await held[0].AckAsync();
        var fifth = await ReceiveWithinAsync(consumer, TimeSpan.FromSeconds(5));
        Assert.Equal("m4", fifth.MessageId);

        await fifth.NackAsync();
        var again = await ReceiveWithinAsync(consumer, TimeSpan.FromSeconds(5));
        Assert.Equal("m4", again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await again.AckAsync();
        foreach (var message in held.Skip(1))
        {
            await message.AckAsync();
        }
    }

    /// <summary>
    /// A handler that keeps more than half the credit for itself (here 6 of 10, never settled until the end) does not
    /// hold the rest back until the next poll: 40 messages acked as they come all arrive well within the poll delay.
    /// </summary>
    [Fact]
    public async Task Messages_keep_flowing_while_more_than_half_the_credit_is_held()
    {
        await using var bus = CreateBus("?poll-max-delay=30000");
        var topic = Unique("parked");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 10 });
        await AddEntriesAsync(Raw.GetDatabase(), topic, 0, 46);
        var parked = await ReceiveManyAsync(consumer, 6);

        using (var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10)))
        {
            for (var i = 6; i < 46; i++)
            {
                var message = await consumer.ReceiveAsync(timeout.Token);
                Assert.Equal($"m{i}", message.MessageId);
                await message.AckAsync();
            }
        }

        foreach (var message in parked)
        {
            await message.AckAsync();
        }
    }

    /// <summary>Entries m{first}… written by the raw client in the adapter's layout (no local publish wakes a consumer).</summary>
    private static async Task AddEntriesAsync(IDatabase db, string topic, int first, int count)
    {
        for (var i = first; i < first + count; i++)
        {
            await db.StreamAddAsync(topic, [new("body", new[] { (byte)i }), new("id", $"m{i}")]);
        }
    }

    private static async Task<List<ReceivedMessage>> ReceiveManyAsync(MessageConsumer consumer, int count)
    {
        var received = new List<ReceivedMessage>(count);
        for (var i = 0; i < count; i++)
        {
            received.Add(await ReceiveAsync(consumer));
        }

        return received;
    }

    private static async Task<ReceivedMessage> ReceiveWithinAsync(MessageConsumer consumer, TimeSpan within)
    {
        using var timeout = new CancellationTokenSource(within);
        return await consumer.ReceiveAsync(timeout.Token);
    }

    [Fact]
    public async Task Timestamp_is_the_entry_id_time()
    {
        await using var bus = CreateBus();
        var topic = Unique("time");
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        var before = DateTimeOffset.UtcNow.AddSeconds(-1);
        await bus.PublishAsync(topic, OutgoingMessage.FromText("now"));
        var message = await ReceiveAsync(consumer);
        Assert.InRange(message.Timestamp, before, DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.StartsWith(message.Timestamp.ToUnixTimeMilliseconds() + "-", message.Position, StringComparison.Ordinal);
        await message.AckAsync();
    }

    [Fact]
    public async Task Dead_lettering_moves_the_entry_atomically_and_the_dlq_group_exists_from_ensure()
    {
        await using var bus = CreateBus();
        var topic = Unique("dlq");
        await bus.EnsureTopicAsync(topic);
        var dlq = bus.GetDeadLetterTopic(topic);
        var db = Raw.GetDatabase();
        var groups = await db.StreamGroupInfoAsync(dlq);
        Assert.Contains(groups, g => g.Name == BusDefaults.DeadLetterGroup);

        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("poison"));
        var message = await ReceiveAsync(consumer);
        await message.DeadLetterAsync("bad input");
        Assert.Equal(0, (await db.StreamPendingAsync(topic, "g")).PendingMessageCount);
        var copy = (await db.StreamRangeAsync(dlq)).Single();
        Assert.Equal("bad input", (string?)copy["h:" + DeadLetterHeaders.Reason]);
        Assert.Equal(message.MessageId, (string?)copy["id"]);
    }

    [Fact]
    public async Task Consumer_name_is_used_and_removed_from_the_group_when_it_owns_nothing()
    {
        await using var bus = CreateBus();
        var topic = Unique("names");
        var db = Raw.GetDatabase();
        var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", ConsumerName = "worker-7" });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        var message = await ReceiveAsync(consumer);
        var owners = await db.StreamPendingMessagesAsync(topic, "g", 10, RedisValue.Null);
        Assert.Equal("worker-7", (string?)Assert.Single(owners).ConsumerName);
        await message.AckAsync();
        await consumer.DisposeAsync();
        Assert.DoesNotContain(await db.StreamConsumerInfoAsync(topic, "g"), c => c.Name == "worker-7");
    }

    [Fact]
    public async Task Delayed_message_from_another_process_waits_in_the_delay_set_then_reaches_every_group()
    {
        await using var publisher = CreateBus();
        await using var bus = CreateBus("?delay-check-interval=200");
        var topic = Unique("delay");
        await using var first = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g1"));
        await using var second = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g2"));
        var watch = System.Diagnostics.Stopwatch.StartNew();
        var message = new OutgoingMessage(new byte[] { 0, 1, 2 }) { Key = "k", Delay = TimeSpan.FromSeconds(1) };
        message.Headers["h"] = "ü";
        await publisher.PublishAsync(topic, message);
        var db = Raw.GetDatabase();
        Assert.Equal(1, await db.SortedSetLengthAsync(topic + "#delayed"));
        Assert.Equal(0, await db.StreamLengthAsync(topic));

        var one = await ReceiveAsync(first);
        var two = await ReceiveAsync(second);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(950), $"delivered after {watch.ElapsedMilliseconds} ms");
        Assert.Equal(message.MessageId, one.MessageId);
        Assert.Equal(message.MessageId, two.MessageId);
        Assert.Equal(new byte[] { 0, 1, 2 }, one.Body.ToArray());
        Assert.Equal("k", one.Key);
        Assert.Equal("ü", one.Headers["h"]);
        Assert.Equal(1, await db.StreamLengthAsync(topic));
        Assert.Equal(0, await db.SortedSetLengthAsync(topic + "#delayed"));
        await one.AckAsync();
        await two.AckAsync();
    }

    [Fact]
    public async Task Nack_with_delay_redelivers_after_the_delay_with_the_next_count()
    {
        await using var bus = CreateBus();
        var topic = Unique("nack-delay");
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromSeconds(5) });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("later"));
        var first = await ReceiveAsync(consumer);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await first.NackAsync(TimeSpan.FromSeconds(1));
        var again = await ReceiveAsync(consumer);
        Assert.True(watch.Elapsed >= TimeSpan.FromMilliseconds(950), $"redelivered after {watch.ElapsedMilliseconds} ms");
        Assert.Equal(first.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await again.AckAsync();
    }

    [Fact]
    public async Task Entries_read_again_after_the_group_is_moved_back_expire_the_deliveries_still_held()
    {
        var logs = new LogLines();
        await using var bus = CreateBus(logs: logs);
        var topic = Unique("setid");
        // With 3 held and a credit of 4, the entries come again one read at a time: each read after the first starts
        // above the one before it, yet still at or below the highest entry read before the move.
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", MaxInFlight = 4 });
        await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("a"), OutgoingMessage.FromText("b"), OutgoingMessage.FromText("c")]);
        var held = new[] { await ReceiveAsync(consumer), await ReceiveAsync(consumer), await ReceiveAsync(consumer) };

        // An operator moves the group back to its start: XREADGROUP > hands out the held entries again.
        var db = Raw.GetDatabase();
        await db.ExecuteAsync("XGROUP", "SETID", topic, "g", "0");

        // The older deliveries have expired: their acks must not settle the entries the newer deliveries handle. (Each
        // is acked before the next is received, as the consumer's in-flight limit counts them until they are settled.)
        var again = new ReceivedMessage[held.Length];
        for (var i = 0; i < held.Length; i++)
        {
            again[i] = await ReceiveAsync(consumer);
            await held[i].AckAsync();
        }

        Assert.Equal(held.Select(m => m.Position), again.Select(m => m.Position));
        Assert.Equal(held.Select(m => m.MessageId), again.Select(m => m.MessageId));
        Assert.Single(logs.Lines, line => line.StartsWith("Warning 3022 ", StringComparison.Ordinal) && line.Contains(topic, StringComparison.Ordinal));

        // XACKs go out in order, so once the marker's ack has reached Redis, any for the expired deliveries would have too.
        await bus.PublishAsync(topic, OutgoingMessage.FromText("marker"));
        var marker = await ReceiveAsync(consumer);
        await marker.AckAsync();
        Assert.Equal(held.Select(m => m.Position), await PendingIdsAfterAsync(db, topic, "g", ids => !ids.Contains(marker.Position)));

        foreach (var message in again)
        {
            await message.AckAsync();
        }

        Assert.Empty(await PendingIdsAfterAsync(db, topic, "g", ids => ids.Length == 0));
    }

    [Fact]
    public async Task An_entry_claimed_and_then_read_again_after_the_group_is_moved_back_expires_the_claimed_delivery()
    {
        var logs = new LogLines();
        await using var first = CreateBus();
        await using var second = CreateBus(logs: logs);
        var topic = Unique("setid-claim");
        var lost = await first.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        await first.PublishAsync(topic, OutgoingMessage.FromText("held"));
        var held = await ReceiveAsync(lost);
        await using var consumer = await second.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));

        // Closing the first consumer releases the entry, and the second, which has read nothing itself, claims it.
        await lost.DisposeAsync();
        var claimed = await ReceiveAsync(consumer);
        Assert.Equal(held.MessageId, claimed.MessageId);
        Assert.Equal(2, claimed.DeliveryCount);

        var db = Raw.GetDatabase();
        await db.ExecuteAsync("XGROUP", "SETID", topic, "g", "0");
        var again = await ReceiveAsync(consumer);
        Assert.Equal(claimed.Position, again.Position);
        Assert.Contains(logs.Lines, line => line.StartsWith("Warning 3022 ", StringComparison.Ordinal) && line.Contains(topic, StringComparison.Ordinal));

        // The claimed delivery has expired: its ack must not settle the entry the newer delivery handles.
        await claimed.AckAsync();
        await second.PublishAsync(topic, OutgoingMessage.FromText("marker"));
        var marker = await ReceiveAsync(consumer);
        await marker.AckAsync();
        Assert.Equal([claimed.Position], await PendingIdsAfterAsync(db, topic, "g", ids => !ids.Contains(marker.Position)));

        await again.AckAsync();
        Assert.Empty(await PendingIdsAfterAsync(db, topic, "g", ids => ids.Length == 0));
    }

    [Fact]
    public async Task Entry_held_past_the_ack_timeout_is_delivered_again_and_the_expired_ack_is_ignored()
    {
        await using var bus = CreateBus();
        var topic = Unique("lease");
        // 2 s: the marker below must be received and acked before the redelivered entry's own lease runs out.
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromSeconds(2) });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("slow"));
        var held = await ReceiveAsync(consumer);
        var again = await ReceiveAsync(consumer);
        Assert.Equal(held.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await held.AckAsync(); // the expired delivery: ignored, the entry stays pending for the new one

        // An ack completes when it is queued for the next XACK, and XACKs go out in order on the bus's connection:
        // once a later ack (the marker's) has reached Redis, an XACK for the expired delivery would have too.
        await bus.PublishAsync(topic, OutgoingMessage.FromText("marker"));
        var marker = await ReceiveAsync(consumer);
        await marker.AckAsync();
        var db = Raw.GetDatabase();
        var pending = await PendingIdsAfterAsync(db, topic, "g", ids => !ids.Contains(marker.Position));
        Assert.Equal([held.Position], pending);

        await again.AckAsync();
        Assert.Empty(await PendingIdsAfterAsync(db, topic, "g", ids => ids.Length == 0));
    }

    /// <summary>The group's pending entry ids once <paramref name="condition"/> holds (acks reach Redis shortly after they complete), or after the wait.</summary>
    private static async Task<string[]> PendingIdsAfterAsync(IDatabase db, string topic, string group, Func<string[], bool> condition)
    {
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            var ids = (await db.StreamPendingMessagesAsync(topic, group, 100, RedisValue.Null)).Select(p => p.MessageId.ToString()).ToArray();
            if (condition(ids) || DateTime.UtcNow > deadline)
            {
                return ids;
            }

            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task Entry_held_past_the_ack_timeout_by_a_live_consumer_goes_to_another_consumer()
    {
        await using var busA = CreateBus();
        await using var busB = CreateBus();
        var topic = Unique("lease-other");
        var options = new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromSeconds(1), MaxInFlight = 1 };
        await using var slow = await busA.CreateConsumerAsync(topic, options);
        await busA.PublishAsync(topic, OutgoingMessage.FromText("slow"));
        var held = await ReceiveAsync(slow);
        await using var other = await busB.CreateConsumerAsync(topic, options);
        var again = await ReceiveAsync(other);
        Assert.Equal(held.MessageId, again.MessageId);
        Assert.Equal(2, again.DeliveryCount);
        await again.AckAsync();
        await held.AckAsync(); // late, from the consumer that lost it: harmless
        Assert.Empty(await PendingIdsAfterAsync(Raw.GetDatabase(), topic, "g", ids => ids.Length == 0));
    }

    [Fact]
    public async Task Consumer_survives_a_restart_of_a_server_without_persistence()
    {
        // An endpoint from BUS_TEST_REDIS_URL cannot be restarted by the tests.
        Assert.True(fixture.Broker.CanControlLifecycle, $"{fixture.Broker} cannot be restarted by the tests");

        await using var bus = CreateBus();
        var topic = Unique("restart");
        var received = new ConcurrentQueue<string>();
        await using var subscription = await bus.SubscribeAsync(topic, (m, _) => { received.Enqueue(m.GetText()); return default; }, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("before"));
        await WaitForAsync(() => received.Contains("before"));

        await fixture.Broker.RestartAsync();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            try
            {
                await bus.PublishAsync(topic, OutgoingMessage.FromText("after"));
                break;
            }
            catch (BusException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(200); // the multiplexer is still reconnecting
            }
        }

        await WaitForAsync(() => received.Contains("after"), TimeSpan.FromSeconds(20));
        Assert.False(subscription.Completion.IsCompleted);
    }

    [Fact]
    public async Task Consumer_recreates_its_group_when_the_stream_is_deleted()
    {
        await using var bus = CreateBus();
        var topic = Unique("deleted");
        var received = new ConcurrentQueue<string>();
        await using var subscription = await bus.SubscribeAsync(topic, (m, _) => { received.Enqueue(m.GetText()); return default; }, SubscriptionOptions.ForGroup("g"));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("before"));
        await WaitForAsync(() => received.Contains("before"));
        Assert.True(await Raw.GetDatabase().KeyDeleteAsync(topic));
        await Task.Delay(200); // let the consumer meet NOGROUP and create the group again
        await WaitForAsync(() => Raw.GetDatabase().KeyExists(topic));
        await bus.PublishAsync(topic, OutgoingMessage.FromText("after"));
        await WaitForAsync(() => received.Contains("after"));
        Assert.False(subscription.Completion.IsCompleted);
    }

    private static async Task WaitForAsync(Func<bool> condition, TimeSpan? timeout = null)
    {
        var deadline = DateTime.UtcNow + (timeout ?? Wait);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, "timed out");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task The_unreachable_broker_case_derives_its_url_when_none_is_given()
    {
        // As a user's 'bus conformance --url redis://…' runs it: no unreachable URL of the backend's own.
        var backend = new Bus.Conformance.ConformanceBackend { Name = "redis", Target = "test", Url = $"redis://{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}?client-name=derived" };
        var result = await Bus.Conformance.ConformanceRunner.RunAsync(backend, Bus.Conformance.ConformanceCatalogue.All.Single(c => c.Name == "unreachable_broker"));
        Assert.True(result.Outcome == Bus.Conformance.CaseOutcome.Passed, result.Reason);
        Assert.Contains("unreachable URL derived from the backend's", result.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeleteTopicAsync_removes_the_stream_and_its_dead_letter_stream()
    {
        var topic = Unique("del");
        await using var bus = (MessageBus)CreateBus();
        await using (await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g1")))
        {
        }

        await bus.PublishAsync(topic, OutgoingMessage.FromText("lost with the topic"));
        var db = Raw.GetDatabase();
        Assert.True(await db.KeyExistsAsync(topic));
        Assert.True(await db.KeyExistsAsync(topic + ".dlq"));

        await bus.DeleteTopicAsync(topic, ["g1"]);

        Assert.False(await db.KeyExistsAsync(topic));
        Assert.False(await db.KeyExistsAsync(topic + ".dlq"));
    }

    [Fact]
    public async Task Disposing_a_bus_deletes_its_private_reply_stream_and_its_dead_letter_stream()
    {
        var topic = Unique("rpc");
        var bus = CreateBus();
        string replyTopic;
        var db = Raw.GetDatabase();
        try
        {
            await using var responder = await bus.SubscribeAsync(topic, async (m, token) => await bus.ReplyAsync(m, OutgoingMessage.FromText("re"), token), SubscriptionOptions.ForGroup("responders"));
            var request = OutgoingMessage.FromText("ping");
            await bus.RequestAsync(topic, request, Wait);
            replyTopic = request.ReplyTo!;
            Assert.True(await db.KeyExistsAsync(replyTopic));
            Assert.True(await db.KeyExistsAsync(replyTopic + ".dlq"));
        }
        finally
        {
            await bus.DisposeAsync();
        }

        Assert.False(await db.KeyExistsAsync(replyTopic));
        Assert.False(await db.KeyExistsAsync(replyTopic + ".dlq"));
        Assert.True(await db.KeyExistsAsync(topic)); // the application's topic stays
    }

    [Fact]
    public async Task Refused_credentials_are_unauthorized_not_transient_and_not_echoed()
    {
        // The fixture's server has no password: set one for the length of this test (connections already open stay
        // authenticated). Without one, StackExchange.Redis carries on after a refused AUTH as the default user.
        const string Wrong = "Wr0ng-s3cret-zz";
        await using var admin = await ConnectionMultiplexer.ConnectAsync($"{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port},allowAdmin=true");
        var server = admin.GetDatabase();
        await server.ExecuteAsync("CONFIG", "SET", "requirepass", RedisFixture.Password);
        try
        {
            // StackExchange.Redis alone reported about one refusal in a hundred (on a loaded machine) only when its
            // ConnectTimeout ran out, as a connection failure: the bus must answer every refusal at once. The timeout is
            // far longer than the test may take, and the attempts many, so that such a wait shows.
            for (var attempt = 0; attempt < 25; attempt++)
            {
                await using var bus = MessageBus.Create(new BusOptions
                {
                    Url = $"redis://default:{Wrong}@{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}",
                    ConnectTimeout = TimeSpan.FromMinutes(10),
                });
                var error = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync(Unique("auth"), OutgoingMessage.FromText("x")).AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
                Assert.Equal(BusFailureReason.Unauthorized, error.Reason);
                Assert.False(error.IsTransient);
                Assert.DoesNotContain(Wrong, error.ToString(), StringComparison.Ordinal);
                Assert.Contains("password", error.Message, StringComparison.OrdinalIgnoreCase); // the server's refusal says why
            }
        }
        finally
        {
            await server.ExecuteAsync("CONFIG", "SET", "requirepass", "");
        }
    }

    /// <summary>
    /// <c>redis://secret@host</c> is a password without a user name: it must not reach an exception or a log line (the
    /// redaction once kept user info without a colon, and "connected to {Url}" is logged at Information).
    /// </summary>
    [Fact]
    public async Task A_password_without_a_user_name_is_not_echoed_in_errors_or_logs()
    {
        const string Secret = "Pw0nly-s3cret-qq";
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var closedPort = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var logs = new LogLines();
        await using (var bus = MessageBus.Create(new BusOptions { Url = $"redis://{Secret}@127.0.0.1:{closedPort}", ConnectTimeout = TimeSpan.FromSeconds(2) }, logs))
        {
            var error = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync(Unique("pw"), OutgoingMessage.FromText("x")));
            Assert.DoesNotContain(Secret, error.ToString(), StringComparison.Ordinal);
            Assert.Contains("redis://***@127.0.0.1", error.Message, StringComparison.Ordinal);
        }

        // And once connected (the fixture's server has no password, so the client's AUTH is refused and it carries on).
        await using (var bus = MessageBus.Create(new BusOptions { Url = $"redis://{Secret}@{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}" }, logs))
        {
            await bus.PublishAsync(Unique("pw"), OutgoingMessage.FromText("x"));
        }

        Assert.NotEmpty(logs.Lines);
        Assert.DoesNotContain(logs.Lines, line => line.Contains(Secret, StringComparison.Ordinal));
    }

    /// <summary>
    /// A consumer that kept an entry past the ack timeout has lost it to another consumer of the group; when its handler
    /// then gives up, dead-lettering its stale delivery must leave the entry to the new owner, who is handling it.
    /// </summary>
    [Fact]
    public async Task Dead_lettering_a_delivery_another_consumer_has_claimed_leaves_the_entry_to_that_consumer()
    {
        await using var slowBus = CreateBus();
        await using var otherBus = CreateBus();
        var topic = Unique("dlq-lost");
        await slowBus.EnsureTopicAsync(topic);
        var options = new SubscriptionOptions { Group = "g", AckTimeout = TimeSpan.FromSeconds(1), MaxInFlight = 1 };
        await using var slow = await slowBus.CreateConsumerAsync(topic, options);
        await slowBus.PublishAsync(topic, OutgoingMessage.FromText("x"));
        var stale = await ReceiveAsync(slow);
        await using var other = await otherBus.CreateConsumerAsync(topic, options);
        var claimed = await ReceiveAsync(other); // after the ack timeout: the other consumer owns the entry now
        Assert.Equal(stale.MessageId, claimed.MessageId);
        Assert.Equal(2, claimed.DeliveryCount);

        await stale.DeadLetterAsync("gave up late");

        var db = Raw.GetDatabase();
        Assert.Empty(await db.StreamRangeAsync(slowBus.GetDeadLetterTopic(topic)));
        Assert.Equal(1, (await db.StreamPendingAsync(topic, "g")).PendingMessageCount);
        await claimed.AckAsync();
        Assert.Empty(await PendingIdsAfterAsync(db, topic, "g", ids => ids.Length == 0));
    }

    /// <summary>Log lines, formatted, from every logger.</summary>
    private sealed class LogLines : ILoggerFactory, ILogger
    {
        public ConcurrentQueue<string> Lines { get; } = new();

        public ILogger CreateLogger(string categoryName) => this;

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => Lines.Enqueue($"{logLevel} {eventId.Id} {formatter(state, exception)} {exception}");
    }

    [Fact]
    public async Task A_publish_the_server_does_not_answer_fails_as_a_timeout_within_the_operation_timeout()
    {
        // Core starts no timer of its own for Redis publishes (the adapter declares that StackExchange.Redis bounds
        // them): this shows the bound holds. CLIENT PAUSE WRITE holds every write command on the server for a while.
        await using var bus = MessageBus.Create(new BusOptions
        {
            Url = $"redis://{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}",
            OperationTimeout = TimeSpan.FromMilliseconds(500),
        });
        var topic = Unique("paused");
        await bus.EnsureTopicAsync(topic);
        // Far longer than the timeout plus the client's once-a-second timeout check (about 1.5 s), so that a test
        // process starved for a while cannot see the pause end first: without a bound the publish would succeed when
        // the pause ends. The finally block ends it at once.
        await using var admin = await ConnectionMultiplexer.ConnectAsync($"{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port},allowAdmin=true");
        await admin.GetDatabase().ExecuteAsync("CLIENT", "PAUSE", "30000", "WRITE");
        try
        {
            var failure = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync(topic, OutgoingMessage.FromText("held")));
            Assert.Equal(BusFailureReason.Timeout, failure.Reason);
        }
        finally
        {
            await admin.GetDatabase().ExecuteAsync("CLIENT", "UNPAUSE"); // the class's next test need not wait for it
        }
    }
}
