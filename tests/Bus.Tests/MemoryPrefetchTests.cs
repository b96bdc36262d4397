using Xunit;

namespace Bus.Tests;

/// <summary>
/// Deliveries a memory:// consumer has taken into its buffer (its prefetch) and not yet handed to the application:
/// their ack timeout runs from the pull, and closing the consumer returns them.
/// </summary>
public class MemoryPrefetchTests
{
    private static readonly SubscriptionOptions ShortAckTimeout = new() { Group = "g", MaxInFlight = 16, AckTimeout = TimeSpan.FromMilliseconds(200), PerKeyOrdering = false };

    // For tests whose consumer must ack each message within the ack timeout: a CI machine under load once took longer
    // than 200 ms (the consumer's own deliveries expired and came again).
    private static readonly SubscriptionOptions OneSecondAckTimeout = new() { Group = "g", MaxInFlight = 16, AckTimeout = TimeSpan.FromSeconds(1), PerKeyOrdering = false };

    private static async Task<ReceivedMessage?> TryReceiveAsync(MessageConsumer consumer, int milliseconds)
    {
        using var timeout = new CancellationTokenSource(milliseconds);
        try
        {
            return await consumer.ReceiveAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    private static async Task PublishAsync(IMessageBus bus, string topic, params string[] ids)
    {
        foreach (var id in ids)
        {
            await bus.PublishAsync(topic, new OutgoingMessage(new byte[] { 1 }) { MessageId = id });
        }
    }

    [Fact]
    public async Task A_buffered_delivery_that_expired_is_not_handed_out_after_another_consumer_acked_its_message()
    {
        var options = OneSecondAckTimeout; // the fast consumer must ack each message within it
        await using var bus = MessageBus.Create("memory://");
        await using var slow = await bus.CreateConsumerAsync("t", options);
        await PublishAsync(bus, "t", "m0", "m1", "m2");
        var first = await TryReceiveAsync(slow, 5000); // one pull: m0 handed out, m1 and m2 buffered
        Assert.Equal("m0", first!.MessageId);
        await Task.Delay(1500); // longer than the ack timeout: all three expire, the buffered ones too

        await using var fast = await bus.CreateConsumerAsync("t", options);
        var ackedByFast = new List<string>();
        while (ackedByFast.Count < 3 && await TryReceiveAsync(fast, 5000) is { } message)
        {
            ackedByFast.Add(message.MessageId);
            await message.AckAsync();
        }

        // Nothing more for either: the fast consumer acked all three, and the slow one's buffered copies expired.
        Assert.Null(await TryReceiveAsync(fast, 300));

        Assert.Equal(["m0", "m1", "m2"], ackedByFast);
        Assert.Null(await TryReceiveAsync(slow, 300));
    }

    [Fact]
    public async Task Messages_acked_as_they_arrive_after_a_slow_one_are_not_delivered_again()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var consumer = await bus.CreateConsumerAsync("t", OneSecondAckTimeout); // each message pulled again must be acked within it
        await PublishAsync(bus, "t", "m0", "m1", "m2");
        var seen = new List<string>();
        var first = await TryReceiveAsync(consumer, 5000);
        seen.Add(first!.MessageId);
        await Task.Delay(1500); // m0 takes too long; m1 and m2 expire in the buffer meanwhile
        await first.AckAsync();
        while (await TryReceiveAsync(consumer, 500) is { } message)
        {
            seen.Add(message.MessageId);
            await message.AckAsync();
        }

        // Each is handled once after the slow one: the expired buffered copies of m1 and m2 are dropped, not handed out
        // (their acks would have been ignored and the messages delivered again).
        Assert.Single(seen, id => id == "m1");
        Assert.Single(seen, id => id == "m2");
    }

    [Fact]
    public async Task Dead_lettering_a_delivery_that_expired_leaves_the_message_to_its_newer_delivery()
    {
        await using var bus = MessageBus.Create("memory://");
        await using var slow = await bus.CreateConsumerAsync("t", ShortAckTimeout);
        await PublishAsync(bus, "t", "m0");
        var stale = await TryReceiveAsync(slow, 5000);
        await Task.Delay(400); // past the ack timeout: the message is back in the group
        await using var other = await bus.CreateConsumerAsync("t", ShortAckTimeout);
        var current = await TryReceiveAsync(other, 5000);
        Assert.Equal("m0", current!.MessageId);
        Assert.Equal(2, current.DeliveryCount);

        await stale!.DeadLetterAsync("gave up late");

        await using var deadLetters = await bus.CreateConsumerAsync(bus.GetDeadLetterTopic("t"), new SubscriptionOptions { Group = "inspect", StartPosition = StartPosition.Earliest });
        Assert.Null(await TryReceiveAsync(deadLetters, 300));
        await current.AckAsync();
    }

    [Fact]
    public async Task Redriving_one_message_at_a_time_moves_every_message_and_dead_letters_none()
    {
        await using var bus = MessageBus.Create("memory://");
        await bus.EnsureTopicAsync("t"); // the dead-letter topic's durable group exists before its messages arrive
        var deadLetterTopic = bus.GetDeadLetterTopic("t");
        await PublishAsync(bus, deadLetterTopic, [.. Enumerable.Range(0, 10).Select(i => $"d{i}")]);

        var moved = 0;
        for (var i = 0; i < 10; i++)
        {
            moved += await bus.RedriveAsync("t", new RedriveOptions { MaxMessages = 1, IdleTimeout = TimeSpan.FromMilliseconds(300) });
        }

        Assert.Equal(10, moved);
        await using var deadLettersOfDeadLetters = await bus.CreateConsumerAsync(bus.GetDeadLetterTopic(deadLetterTopic), new SubscriptionOptions { Group = "x", StartPosition = StartPosition.Earliest });
        Assert.Null(await TryReceiveAsync(deadLettersOfDeadLetters, 300));
    }
}
