using System.Collections.Concurrent;
using System.Globalization;
using static Bus.Conformance.CaseContext;

namespace Bus.Conformance.Cases;

/// <summary>dlq: poison messages reach the dead-letter topic intact, and come back on redrive.</summary>
internal static class DeadLetterCases
{
    public static IEnumerable<ConformanceCase> All =>
    [
        new("after_max_deliveries", "dlq", BusFeatures.None, "a poison message is attempted exactly max-deliveries times, then dead-lettered once", AfterMaxDeliveries),
        new("keeps_message", "dlq", BusFeatures.None, "the dead-letter copy keeps body, key, headers, id and adds topic, reason, count, time", KeepsMessage),
        new("others_keep_flowing", "dlq", BusFeatures.None, "100 good messages are handled while the poison one is retried", OthersKeepFlowing),
        new("after_nacks", "dlq", BusFeatures.None, "a pull consumer that nacks a message max-deliveries times does not receive it again: it is dead-lettered once", AfterNacks),
        new("after_ack_timeouts", "dlq", BusFeatures.AckTimeoutRedelivery, "a message never settled, its ack timeout passing each time, is dead-lettered after max deliveries", AfterAckTimeouts),
        new("after_consumer_deaths", "dlq", BusFeatures.RedeliveryOfAbandoned | BusFeatures.SharedDeliveryCount, "a message whose consumer dies holding it (a bus of its own, disposed) max-deliveries times is dead-lettered, not handed out again", AfterConsumerDeaths),
        new("explicit", "dlq", BusFeatures.None, "a handler's explicit dead-letter skips retries and keeps its reason", Explicit),
        new("redrive", "dlq", BusFeatures.None, "redrive moves the message back to its topic and empties the dead-letter topic", Redrive),
        new("consumable", "dlq", BusFeatures.None, "the dead-letter topic is consumed and acked through the same API", Consumable),
    ];

    /// <summary>A subscription whose handler always throws for messages whose body is "poison", counting attempts.</summary>
    private static async Task<(ISubscription Subscription, ConcurrentDictionary<string, int> Attempts)> SubscribePoisonedAsync(CaseContext ctx, string topic, Action<ReceivedMessage>? onGood = null, TimeSpan? retryDelay = null)
    {
        var attempts = new ConcurrentDictionary<string, int>();
        var subscription = await ctx.Bus.SubscribeAsync(topic, (m, _) =>
        {
            if (m.GetText() == "poison")
            {
                attempts.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1);
                throw new InvalidOperationException("poison message " + m.MessageId);
            }

            onGood?.Invoke(m);
            return default;
        }, new SubscriptionOptions
        {
            Group = ctx.Group(),
            MaxDeliveries = 3,
            RetryDelay = retryDelay ?? TimeSpan.FromMilliseconds(20),
            MaxRetryDelay = retryDelay ?? TimeSpan.FromMilliseconds(20),
        });
        return (subscription, attempts);
    }

    private static Task<MessageConsumer> OpenDeadLettersAsync(CaseContext ctx, string topic)
        => ctx.Bus.CreateConsumerAsync(ctx.Bus.GetDeadLetterTopic(topic), new SubscriptionOptions { Group = BusDefaults.DeadLetterGroup, PerKeyOrdering = false }).AsTask();

    private static OutgoingMessage Poison()
    {
        var message = OutgoingMessage.FromText("poison", "poison-key");
        message.Headers["h-app"] = "kept ✓";
        message.CorrelationId = "corr-poison";
        return message;
    }

    private static async Task AfterMaxDeliveries(CaseContext ctx)
    {
        var topic = ctx.Topic("maxdel");
        await ctx.Bus.EnsureTopicAsync(topic);
        var (subscription, attempts) = await SubscribePoisonedAsync(ctx, topic);
        await using var subscriptionScope = subscription;
        var poison = Poison();
        await ctx.Bus.PublishAsync(topic, poison);
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var copy = await ctx.ReceiveAsync(deadLetters, "the dead-letter copy");
        CheckEqual(poison.MessageId, copy.MessageId, "dead-letter message id");
        await copy.AckAsync();
        Check(await ctx.ReceiveWithinAsync(deadLetters) is null, "a second dead-letter copy arrived");
        var count = attempts.GetValueOrDefault(poison.MessageId!);
        ctx.Report("attempts", count);
        CheckEqual(3, count, "handler attempts before dead-lettering");
    }

    /// <summary>
    /// The pull side of <see cref="AfterMaxDeliveries"/>: no handler and no in-place retries, the application nacks each
    /// delivery itself (a message it cannot process yet). The nack after the last allowed delivery must not lead to a
    /// further one: the message is dead-lettered when the backend offers it again. A native delivery limit that counted
    /// differently (RabbitMQ's x-delivery-limit, SQS's maxReceiveCount) would show here as a copy without a reason.
    /// </summary>
    private static async Task AfterNacks(CaseContext ctx)
    {
        var topic = ctx.Topic("nacked");
        await ctx.Bus.EnsureTopicAsync(topic);
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = ctx.Group(), MaxDeliveries = 2 });
        var refused = Poison();
        await ctx.Bus.PublishAsync(topic, refused);
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var delivery = await ctx.ReceiveAsync(consumer, $"delivery {attempt}");
            CheckEqual(refused.MessageId, delivery.MessageId, $"delivery {attempt}");
            await delivery.NackAsync();
        }

        ctx.Report("deliveries", 2);
        await ExpectDeadLetteredAsync(ctx, consumer, deadLetters, refused.MessageId!, "the dead-letter copy after the second nack", "delivered a third time");
    }

    private static async Task AfterAckTimeouts(CaseContext ctx)
    {
        var topic = ctx.Topic("hangs");
        await ctx.Bus.EnsureTopicAsync(topic);
        // A handler that hangs on the message every time: the consumer stays open and never settles it.
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, new SubscriptionOptions
        {
            Group = ctx.Group(),
            MaxDeliveries = 2,
            AckTimeout = TimeSpan.FromSeconds(1), // SQS's visibility timeout counts whole seconds
        });
        var hung = Poison();
        await ctx.Bus.PublishAsync(topic, hung);
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var counts = new List<int>();
        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var delivery = await ctx.ReceiveAsync(consumer, $"delivery {attempt}");
            CheckEqual(hung.MessageId, delivery.MessageId, $"delivery {attempt}");
            counts.Add(delivery.DeliveryCount);
        }

        // The consumer goes on receiving, as a live one does: receiving the third delivery is what dead-letters it (a
        // pull consumer checks the count when it hands a message out), so that delivery never reaches the application.
        ctx.Report("deliveries", counts.Count);
        await ExpectDeadLetteredAsync(ctx, consumer, deadLetters, hung.MessageId!, "the dead-letter copy after the second ack timeout", "delivered to the group again");
    }

    /// <summary>
    /// While <paramref name="consumer"/> goes on receiving: the message with <paramref name="messageId"/> arrives once in
    /// the dead-letter topic, with a reason, and is not handed to the consumer again.
    /// </summary>
    private static async Task ExpectDeadLetteredAsync(CaseContext ctx, MessageConsumer consumer, MessageConsumer deadLetters, string messageId, string copyWaitedFor, string deliveredAgain)
    {
        using var watching = new CancellationTokenSource();
        var next = ReceiveOrNullAsync(consumer, watching.Token);
        try
        {
            var copy = await ctx.ReceiveAsync(deadLetters, copyWaitedFor);
            CheckEqual(messageId, copy.MessageId, "dead-letter message id");
            ctx.Report("dead_letter_count", copy.Headers.TryGetValue(DeadLetterHeaders.DeliveryCount, out var recorded) && int.TryParse(recorded, out var n) ? n : -1);
            Check(copy.Headers.ContainsKey(DeadLetterHeaders.Reason), "the dead-letter copy has no reason");
            await copy.AckAsync();
            watching.CancelAfter(ctx.QuietPeriod);
            var delivered = await next;
            Check(delivered is null, $"the message was {deliveredAgain} (delivery count {delivered?.DeliveryCount}) instead of being dead-lettered");
            Check(await ctx.ReceiveWithinAsync(deadLetters) is null, "a second dead-letter copy arrived");
        }
        finally
        {
            await watching.CancelAsync();
            await next;
        }
    }

    /// <summary>
    /// A message that crashes every process that takes it: each delivery goes to a consumer in a bus of its own, which
    /// is disposed while it holds the message unsettled. After max deliveries the group must stop handing it out, or
    /// the crash loop never ends. Needs counts that outlive the consumer's process (SharedDeliveryCount): a backend that
    /// counts only within one bus starts again at 1 with each. The counts must be 1 and 2 where they are declared exact,
    /// and rise where they are approximate.
    /// </summary>
    private static async Task AfterConsumerDeaths(CaseContext ctx)
    {
        var topic = ctx.Topic("deaths");
        await ctx.Bus.EnsureTopicAsync(topic);
        // A long ack timeout: a lease that expired while a doomed consumer held the message would count a delivery more.
        var options = new SubscriptionOptions { Group = ctx.Group(), MaxDeliveries = 2, AckTimeout = TimeSpan.FromSeconds(30) };
        var fatal = Poison();
        var counts = new List<int>();
        for (var attempt = 1; attempt <= 2; attempt++)
        {
            var doomed = ctx.CreateBus();
            try
            {
                var consumer = await doomed.CreateConsumerAsync(topic, options);
                if (attempt == 1)
                {
                    await ctx.Bus.PublishAsync(topic, fatal);
                }

                var delivery = await ctx.ReceiveAsync(consumer, $"delivery {attempt}, to a consumer in a bus of its own");
                CheckEqual(fatal.MessageId, delivery.MessageId, $"delivery {attempt}");
                counts.Add(delivery.DeliveryCount);
            }
            finally
            {
                await doomed.DisposeAsync(); // the consumer goes with its bus, the message unsettled
            }
        }

        ctx.Report("first_delivery_count", counts[0]);
        ctx.Report("second_delivery_count", counts[1]);
        if (ctx.Capabilities.Supports(BusFeatures.ExactDeliveryCount))
        {
            CheckEqual("1, 2", string.Join(", ", counts), "delivery counts of the two deliveries");
        }
        else
        {
            Check(counts[1] > counts[0], $"the second delivery has count {counts[1]}, the first {counts[0]}: the count did not outlive the first consumer's bus");
        }

        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        await using var survivor = await ctx.Bus.CreateConsumerAsync(topic, options);
        await ExpectDeadLetteredAsync(ctx, survivor, deadLetters, fatal.MessageId!, "the dead-letter copy after the second consumer died", "handed to a third consumer");
    }

    private static async Task<ReceivedMessage?> ReceiveOrNullAsync(MessageConsumer consumer, CancellationToken cancellationToken)
    {
        try
        {
            return await consumer.ReceiveAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    private static async Task KeepsMessage(CaseContext ctx)
    {
        var topic = ctx.Topic("keeps");
        await ctx.Bus.EnsureTopicAsync(topic);
        var (subscription, _) = await SubscribePoisonedAsync(ctx, topic);
        await using var subscriptionScope = subscription;
        var poison = Poison();
        var before = DateTimeOffset.UtcNow.AddSeconds(-5);
        await ctx.Bus.PublishAsync(topic, poison);
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var copy = await ctx.ReceiveAsync(deadLetters, "the dead-letter copy");
        await copy.AckAsync();

        CheckEqual("poison", copy.GetText(), "body");
        CheckEqual(poison.Key, copy.Key, "key");
        CheckEqual(poison.MessageId, copy.MessageId, "message id");
        CheckEqual(poison.CorrelationId, copy.CorrelationId, "correlation id");
        CheckEqual("kept ✓", copy.Headers.GetValueOrDefault("h-app"), "application header");
        CheckEqual(topic, copy.Headers.GetValueOrDefault(DeadLetterHeaders.OriginalTopic), "original topic header");
        var reason = copy.Headers.GetValueOrDefault(DeadLetterHeaders.Reason) ?? "";
        Check(reason.Contains(nameof(InvalidOperationException), StringComparison.Ordinal) && reason.Contains("poison message", StringComparison.Ordinal), $"reason '{reason}' lacks the exception type and message");
        CheckEqual("3", copy.Headers.GetValueOrDefault(DeadLetterHeaders.DeliveryCount), "delivery count header");
        var time = copy.Headers.GetValueOrDefault(DeadLetterHeaders.Time);
        Check(DateTimeOffset.TryParse(time, CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var when) && when >= before && when <= DateTimeOffset.UtcNow.AddSeconds(5), $"dead-letter time '{time}' is not a plausible ISO 8601 time");
    }

    private static async Task OthersKeepFlowing(CaseContext ctx)
    {
        var topic = ctx.Topic("flow");
        await ctx.Bus.EnsureTopicAsync(topic);
        var good = new ConcurrentDictionary<string, byte>();
        // Retries 1 s apart: the poison message is dead-lettered no sooner than 2 s after its first attempt.
        var (subscription, attempts) = await SubscribePoisonedAsync(ctx, topic, m => good.TryAdd(m.MessageId, 0), TimeSpan.FromSeconds(1));
        await using var subscriptionScope = subscription;
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var poison = Poison();
        await ctx.Bus.PublishAsync(topic, poison);
        await ctx.WaitUntilAsync(() => attempts.GetValueOrDefault(poison.MessageId!) >= 1, "the first poison attempt");
        var batch = Enumerable.Range(0, 100).Select(i => Numbered($"good {i}", $"key-{i % 10}", i)).ToList();
        await ctx.Bus.PublishBatchAsync(topic, batch);
        await ctx.WaitUntilAsync(() => good.Count >= 100 || deadLetters.TryReceive(out _), "100 good messages", () => $"{good.Count} good handled");
        var attemptsWhenDone = attempts.GetValueOrDefault(poison.MessageId!);
        ctx.Report("poison_attempts_meanwhile", attemptsWhenDone);
        Check(good.Count >= 100, $"the poison message was dead-lettered before the good ones were handled ({good.Count} of 100)");
        Check(attemptsWhenDone < 3, "the good messages waited for the poison message's retries to end");
        var copy = await ctx.ReceiveAsync(deadLetters, "the dead-letter copy");
        CheckEqual(poison.MessageId, copy.MessageId, "dead-letter message id");
    }

    private static async Task Explicit(CaseContext ctx)
    {
        var topic = ctx.Topic("explicit");
        await ctx.Bus.EnsureTopicAsync(topic);
        var attempts = 0;
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, token) =>
        {
            Interlocked.Increment(ref attempts);
            await m.DeadLetterAsync("rejected by the test", "explicit dead-letter", token);
        }, SubscriptionOptions.ForGroup(ctx.Group()));
        var message = OutgoingMessage.FromText("q");
        await ctx.Bus.PublishAsync(topic, message);
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var copy = await ctx.ReceiveAsync(deadLetters, "the dead-letter copy");
        await copy.AckAsync();
        CheckEqual(message.MessageId, copy.MessageId, "dead-letter message id");
        CheckEqual("rejected by the test", copy.Headers.GetValueOrDefault(DeadLetterHeaders.Reason), "reason");
        CheckEqual("explicit dead-letter", copy.Headers.GetValueOrDefault(DeadLetterHeaders.Description), "description");
        CheckEqual(1, Volatile.Read(ref attempts), "attempts");
        CheckEqual("1", copy.Headers.GetValueOrDefault(DeadLetterHeaders.DeliveryCount), "delivery count header");
    }

    private static async Task Redrive(CaseContext ctx)
    {
        var topic = ctx.Topic("redrive");
        await ctx.Bus.EnsureTopicAsync(topic);
        var seen = new ConcurrentQueue<string>();
        Redriven? redriven = null;
        int healed = 0, deadLettered = 0;
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, async (m, token) =>
        {
            if (Volatile.Read(ref healed) == 0)
            {
                seen.Enqueue(m.MessageId);
                await m.DeadLetterAsync("not yet", null, token);
                Interlocked.Increment(ref deadLettered);
            }
            else
            {
                // What the handler saw, taken while it runs (a backend may reuse a delivery's buffers once it is settled).
                Volatile.Write(ref redriven, new Redriven(m.MessageId, m.GetText(), m.Key, m.CorrelationId, m.Headers.GetValueOrDefault("h-app"), m.Topic, m.DeliveryCount,
                    [.. m.Headers.Keys.Where(DeadLetterHeaders.IsDeadLetterHeader)]));
                seen.Enqueue(m.MessageId);
            }
        }, SubscriptionOptions.ForGroup(ctx.Group()));
        var message = Poison();
        await ctx.Bus.PublishAsync(topic, message);
        await ctx.WaitUntilAsync(() => Volatile.Read(ref deadLettered) >= 1, "the message to be dead-lettered");

        Volatile.Write(ref healed, 1);
        var moved = await ctx.Bus.RedriveAsync(topic, new RedriveOptions { IdleTimeout = TimeSpan.FromSeconds(1 * ctx.Backend.TimeoutScale) });
        ctx.Report("moved", moved);
        CheckEqual(1, moved, "messages moved by redrive");
        await ctx.WaitUntilAsync(() => Volatile.Read(ref redriven) is not null, "the message to be consumed again from its topic", () => $"{seen.Count} deliveries");

        // Back as it was first published: the application's fields, none of the dead-letter headers, a first delivery.
        var back = Volatile.Read(ref redriven)!;
        CheckEqual(message.MessageId, back.MessageId, "message id after redrive");
        CheckEqual("poison", back.Text, "body after redrive");
        CheckEqual(message.Key, back.Key, "key after redrive");
        CheckEqual(message.CorrelationId, back.CorrelationId, "correlation id after redrive");
        CheckEqual("kept ✓", back.ApplicationHeader, "application header after redrive");
        CheckEqual(topic, back.Topic, "topic after redrive");
        CheckEqual(1, back.DeliveryCount, "delivery count after redrive");
        Check(back.DeadLetterHeaders.Count == 0, $"the redriven message still carries dead-letter headers: {string.Join(", ", back.DeadLetterHeaders)}");
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var left = await ctx.ReceiveWithinAsync(deadLetters);
        Check(left is null, $"the dead-letter topic still holds message {left?.MessageId}");
    }

    private sealed record Redriven(string MessageId, string Text, string? Key, string? CorrelationId, string? ApplicationHeader, string Topic, int DeliveryCount, List<string> DeadLetterHeaders);

    private static async Task Consumable(CaseContext ctx)
    {
        var topic = ctx.Topic("consumable");
        await ctx.Bus.EnsureTopicAsync(topic);
        await using var subscription = await ctx.Bus.SubscribeAsync(topic, (m, token) => m.DeadLetterAsync("to the dlq", null, token), SubscriptionOptions.ForGroup(ctx.Group()));
        var message = OutgoingMessage.FromText("c");
        await ctx.Bus.PublishAsync(topic, message);
        await using var deadLetters = await OpenDeadLettersAsync(ctx, topic);
        var copy = await ctx.ReceiveAsync(deadLetters, "the dead-letter copy");
        CheckEqual(ctx.Bus.GetDeadLetterTopic(topic), copy.Topic, "topic of the dead-letter copy");
        CheckEqual(message.MessageId, copy.MessageId, "message id");
        CheckEqual(1, copy.DeliveryCount, "delivery count of the dead-letter copy");
        await copy.AckAsync();
        Check(await ctx.ReceiveWithinAsync(deadLetters) is null, "the acked dead-letter copy arrived again");
    }
}
