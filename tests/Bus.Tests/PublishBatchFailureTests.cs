using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>
/// A batch that fails part way says which of the caller's messages the backend did not confirm
/// (<see cref="PublishBatchException.UnconfirmedMessages"/>), and every message it leaves out of that list was stored.
/// </summary>
public class PublishBatchFailureTests
{
    static PublishBatchFailureTests()
    {
        BusTransports.Register(new DelegatingFactory("test-refusing", inner => new Refusing(inner)));
        BusTransports.Register(new DelegatingFactory("test-confirming-slowly", inner => new ConfirmingSlowly(inner)));
        BusTransports.Register(new DelegatingFactory("test-confirming-late", inner => new ConfirmingLate(inner)));
    }

    [Fact]
    public async Task A_batch_that_fails_part_way_lists_the_unconfirmed_messages_and_the_rest_were_stored()
    {
        await using var bus = MessageBus.Create("test-refusing://");
        const string topic = "partly-refused"; // a topic of its own: the published counter is summed per topic, across tests running in parallel
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g"));
        using var published = new MetricCounter("bus.messages.published", topic);
        var messages = Enumerable.Range(0, 20).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();
        foreach (var i in new[] { 3, 4, 17 })
        {
            messages[i].Headers[Refusing.Header] = "yes";
        }

        var error = await Assert.ThrowsAsync<PublishBatchException>(async () => await bus.PublishBatchAsync(topic, messages));

        Assert.Equal([messages[3], messages[4], messages[17]], error.UnconfirmedMessages);
        Assert.Equal(20, error.BatchSize);
        Assert.Equal(17, error.ConfirmedCount);
        Assert.Equal(BusFailureReason.PublishNotConfirmed, error.Reason);
        Assert.True(error.IsTransient);
        Assert.Equal(topic, error.Topic);
        Assert.Equal("memory", error.Backend);
        Assert.IsType<BusException>(error.InnerException);
        Assert.Contains("17 of the batch's 20 messages were confirmed", error.Message, StringComparison.Ordinal);
        Assert.Equal(17, published.Total);

        var stored = await ReceiveAllAsync(consumer, 17);
        Assert.Equal(messages.Except(error.UnconfirmedMessages).Select(m => m.MessageId).Order(), stored.Select(m => m.MessageId).Order()); // no key: no order

        // Publishing the unconfirmed ones again (without what made them fail) completes the batch, ids kept.
        foreach (var message in error.UnconfirmedMessages)
        {
            message.Headers.Remove(Refusing.Header);
        }

        await bus.PublishBatchAsync(topic, error.UnconfirmedMessages);
        var retried = await ReceiveAllAsync(consumer, 3);
        Assert.Equal(error.UnconfirmedMessages.Select(m => m.MessageId).Order(), retried.Select(m => m.MessageId).Order());
    }

    [Fact]
    public async Task A_batch_that_times_out_lists_what_was_not_confirmed_by_then()
    {
        await using var bus = MessageBus.Create(new BusOptions { Url = "test-confirming-slowly://", OperationTimeout = TimeSpan.FromMilliseconds(500) });
        var messages = Enumerable.Range(0, 1_000).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();

        var error = await Assert.ThrowsAsync<PublishBatchException>(async () => await bus.PublishBatchAsync("t", messages));

        Assert.Equal(BusFailureReason.Timeout, error.Reason);
        Assert.InRange(error.ConfirmedCount, 1, messages.Count - 1);
        Assert.Equal(messages.Skip(error.ConfirmedCount), error.UnconfirmedMessages); // confirmed in order, so the rest is a tail
    }

    /// <summary>
    /// A transport that does not bound its own time and confirms the whole batch while core, past its timeout, waits for
    /// it to stop: the batch succeeded, and the call says so (it used to report every message unconfirmed).
    /// </summary>
    [Fact]
    public async Task A_batch_confirmed_whole_while_being_stopped_succeeds()
    {
        await using var bus = MessageBus.Create(new BusOptions { Url = "test-confirming-late://", OperationTimeout = TimeSpan.FromMilliseconds(300) });
        await using var consumer = await bus.CreateConsumerAsync("late", SubscriptionOptions.ForGroup("g"));
        var messages = Enumerable.Range(0, 5).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();

        await bus.PublishBatchAsync("late", messages);

        Assert.Equal(messages.Select(m => m.MessageId).Order(), (await ReceiveAllAsync(consumer, 5)).Select(m => m.MessageId).Order());
    }

    [Fact]
    public async Task A_cancelled_batch_throws_the_cancellation()
    {
        await using var bus = MessageBus.Create("test-confirming-slowly://");
        var messages = Enumerable.Range(0, 1_000).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();
        using var caller = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await bus.PublishBatchAsync("t", messages, caller.Token));
    }

    [Fact]
    public async Task A_batch_that_fails_before_sending_lists_every_message()
    {
        await using var bus = MessageBus.Create("test-refusing://");
        var messages = new[] { OutgoingMessage.FromText("a"), OutgoingMessage.FromText("b") };
        ((Refusing)bus.Transport).RefuseTopics = true;

        var error = await Assert.ThrowsAsync<PublishBatchException>(async () => await bus.PublishBatchAsync("new-topic", messages));

        Assert.Equal(messages, error.UnconfirmedMessages);
        Assert.Equal(0, error.ConfirmedCount);
        Assert.Equal("new-topic", error.Topic);
    }

    private static async Task<List<ReceivedMessage>> ReceiveAllAsync(MessageConsumer consumer, int count)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var received = new List<ReceivedMessage>();
        while (received.Count < count)
        {
            var message = await consumer.ReceiveAsync(timeout.Token);
            await message.AckAsync();
            received.Add(message);
        }

        using var quiet = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () => await consumer.ReceiveAsync(quiet.Token));
        return received;
    }

    /// <summary>Publishes through the transport's default batch (one publish per message), refusing messages with a header.</summary>
    private sealed class Refusing(MessageTransport inner) : DelegatingTransport(inner)
    {
        public const string Header = "refuse";

        public bool RefuseTopics { get; set; }

        public override ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
            => RefuseTopics
                ? throw new BusException($"memory: topic '{topic.Name}' refused by the test", BusFailureReason.BrokerError, "memory", topic.Name, isTransient: true)
                : base.EnsureTopicAsync(topic, cancellationToken);

        public override async ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
        {
            await Task.Yield();
            if (message.Headers.ContainsKey(Header))
            {
                throw new BusException($"memory: message {message.MessageId} on topic '{topic}' refused by the test", BusFailureReason.PublishNotConfirmed, "memory", topic, isTransient: true);
            }

            await base.PublishAsync(topic, message, cancellationToken);
        }

        protected override bool UsesDefaultBatch => true;
    }

    /// <summary>Confirms one message every 2 ms, in order, marking each; does not bound its own time.</summary>
    private sealed class ConfirmingSlowly(MessageTransport inner) : DelegatingTransport(inner)
    {
        public override bool BoundsPublishTime => false;

        public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
        {
            for (var i = 0; i < messages.Count; i++)
            {
                if (i > 0)
                {
                    // Not before the first: a timeout then always finds some confirmed, however late the first delay's
                    // continuation would have run on a starved machine.
                    await Task.Delay(2, cancellationToken);
                }

                await base.PublishAsync(topic, messages[i], cancellationToken);
                confirmations.Confirm(i);
            }
        }
    }

    /// <summary>
    /// Confirms the whole batch only once core, past its operation timeout, asks it to stop (a signal, not a delay: a
    /// confirmation 500 ms after a 300 ms timeout, within core's 300 ms wait for the stop, had 100 ms to spare on a
    /// machine that can starve a test process for longer).
    /// </summary>
    private sealed class ConfirmingLate(MessageTransport inner) : DelegatingTransport(inner)
    {
        public override bool BoundsPublishTime => false;

        public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            await base.PublishBatchAsync(topic, messages, confirmations, CancellationToken.None);
        }
    }
}
