using System.Collections.Concurrent;
using System.CommandLine;
using Spectre.Console;

namespace Bus.Cli.Commands;

/// <summary>
/// <c>bus demo</c>: the same code on any backend: per-key ordering with concurrent handlers, a poison message
/// retried and dead-lettered, then redriven once the handler is fixed.
/// </summary>
internal static class DemoCommand
{
    public static Command Create()
    {
        var url = CommonOptions.Url();
        var command = new Command("demo", "Publish and consume on the embedded default (or --url): ordering, dead-lettering and redrive.") { url };
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var bus = MessageBus.Create(CommonOptions.Resolve(parse.GetValue(url)));
            await RunAsync(bus, cancellationToken);
            return 0;
        });
        return command;
    }

    private static async Task RunAsync(MessageBus bus, CancellationToken cancellationToken)
    {
        var run = Guid.NewGuid().ToString("N")[..6];
        AnsiConsole.Write(new Rule($"[bold]Bus demo[/] on [green]{Markup.Escape(bus.Backend)}[/] ({Markup.Escape(bus.RedactedUrl)})").LeftJustified());
        await bus.ConnectAsync(cancellationToken);

        // 1. Per-key ordering: three accounts, five events each, interleaved; up to 8 handlers at once.
        AnsiConsole.MarkupLine("\n[bold]1. Per-key ordering[/]: 3 keys × 5 events, interleaved, 8 handlers in flight, random handler latency");
        var orders = $"demo-orders-{run}";
        var handled = new ConcurrentDictionary<string, ConcurrentQueue<int>>();
        var random = new Random(7);
        await using (var subscription = await bus.SubscribeAsync(orders, async (message, token) =>
        {
            await Task.Delay(random.Next(1, 20), token);
            handled.GetOrAdd(message.Key!, _ => new()).Enqueue(int.Parse(message.GetText(), System.Globalization.CultureInfo.InvariantCulture));
        }, new SubscriptionOptions { Group = "billing", MaxInFlight = 8 }, cancellationToken))
        {
            var events = Enumerable.Range(1, 5).SelectMany(n => new[] { "alice", "bob", "carol" }.Select(key => OutgoingMessage.FromText(n.ToString(System.Globalization.CultureInfo.InvariantCulture), key))).ToList();
            await bus.PublishBatchAsync(orders, events, cancellationToken);
            await WaitAsync(() => handled.Values.Sum(q => q.Count) >= 15, cancellationToken);
        }

        var table = new Table().AddColumns("key", "handled in order", "ordered");
        foreach (var (key, sequence) in handled.OrderBy(p => p.Key))
        {
            var values = sequence.ToArray();
            table.AddRow(key, string.Join(" → ", values), values.SequenceEqual(values.Order()) ? "[green]yes[/]" : "[red]no[/]");
        }

        AnsiConsole.Write(table);

        // 2. A poison message: retried in place, then dead-lettered with the reason.
        AnsiConsole.MarkupLine("\n[bold]2. Dead-lettering[/]: the handler throws for one payment; max deliveries 3");
        var payments = $"demo-payments-{run}";
        await bus.EnsureTopicAsync(payments, cancellationToken: cancellationToken);
        var fixedHandler = 0;
        var attempts = new ConcurrentQueue<string>();
        var done = new ConcurrentQueue<string>();
        await using var paymentsSubscription = await bus.SubscribeAsync(payments, (message, _) =>
        {
            attempts.Enqueue($"{message.GetText()} (delivery {message.DeliveryCount})");
            if (message.GetText() == "payment 42" && Volatile.Read(ref fixedHandler) == 0)
            {
                throw new InvalidOperationException("card declined: issuer unavailable");
            }

            done.Enqueue(message.GetText());
            return default;
        }, new SubscriptionOptions { Group = "ledger", MaxDeliveries = 3, RetryDelay = TimeSpan.FromMilliseconds(100) }, cancellationToken);
        await bus.PublishAsync(payments, "payment 41", cancellationToken: cancellationToken);
        await bus.PublishAsync(payments, "payment 42", cancellationToken: cancellationToken);
        await bus.PublishAsync(payments, "payment 43", cancellationToken: cancellationToken);

        var deadLetterTopic = bus.GetDeadLetterTopic(payments);
        await using (var deadLetters = await bus.CreateConsumerAsync(deadLetterTopic, new SubscriptionOptions { Group = BusDefaults.DeadLetterGroup, PerKeyOrdering = false }, cancellationToken))
        {
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            wait.CancelAfter(TimeSpan.FromSeconds(30));
            var copy = await deadLetters.ReceiveAsync(wait.Token);
            AnsiConsole.MarkupLine($"attempts: {Markup.Escape(string.Join(", ", attempts))}");
            var details = new Table().AddColumns("dead-letter header", "value");
            foreach (var name in new[] { DeadLetterHeaders.OriginalTopic, DeadLetterHeaders.Reason, DeadLetterHeaders.DeliveryCount, DeadLetterHeaders.Time })
            {
                details.AddRow(name, Markup.Escape(copy.Headers.GetValueOrDefault(name) ?? ""));
            }

            AnsiConsole.MarkupLine($"in [bold]{Markup.Escape(deadLetterTopic)}[/]: '{Markup.Escape(copy.GetText())}'");
            AnsiConsole.Write(details);

            // Leave it there for redrive: nack returns it to the dead-letter group.
            await copy.NackAsync(cancellationToken: cancellationToken);
        }

        // 3. Fix the handler, redrive, and watch the payment go through.
        AnsiConsole.MarkupLine("\n[bold]3. Redrive[/]: the issuer is back; move the dead letter home");
        Volatile.Write(ref fixedHandler, 1);
        var moved = await bus.RedriveAsync(payments, new RedriveOptions { IdleTimeout = TimeSpan.FromSeconds(1) }, cancellationToken);
        await WaitAsync(() => done.Contains("payment 42"), cancellationToken);
        AnsiConsole.MarkupLine($"redrove {moved}; handled: {Markup.Escape(string.Join(", ", done))}");
        AnsiConsole.Write(new Rule("[green]done[/]: change --url to run the same code on another backend").LeftJustified());
    }

    private static async Task WaitAsync(Func<bool> condition, CancellationToken cancellationToken)
    {
        var limit = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > limit)
            {
                throw new TimeoutException("the demo waited 30 s for messages that did not arrive");
            }

            await Task.Delay(20, cancellationToken);
        }
    }
}
