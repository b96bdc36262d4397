using System.CommandLine;
using Spectre.Console;

namespace Bus.Cli.Commands;

/// <summary><c>bus consume</c>: print and ack messages.</summary>
internal static class ConsumeCommand
{
    public static Command Create()
    {
        var url = CommonOptions.Url();
        var topic = new Argument<string>("topic") { Description = "The topic." };
        var group = new Option<string>("--group", "-g") { Description = "Consumer group.", DefaultValueFactory = _ => "bus-cli" };
        var from = new Option<string>("--from") { Description = "Where a new group starts: latest, earliest, a position, or an ISO 8601 time.", DefaultValueFactory = _ => "latest" };
        var count = new Option<int?>("--count", "-n") { Description = "Stop after this many messages." }.AtLeast(1);
        var idle = new Option<double>("--idle-seconds") { Description = "Stop after this long without a message (0: never).", DefaultValueFactory = _ => 0 }
            .Must(value => value is >= 0, "must not be negative"); // NaN is refused too
        var command = new Command("consume", "Print messages from a topic and ack them.") { url, topic, group, from, count, idle };
        command.SetAction(async (parse, cancellationToken) =>
        {
            await using var bus = MessageBus.Create(CommonOptions.Resolve(parse.GetValue(url)));
            CommonOptions.WarnIfMemory(bus, "nothing another command publishes can arrive here");
            var start = parse.GetValue(from) switch
            {
                "latest" => StartPosition.Latest,
                "earliest" => StartPosition.Earliest,
                var text when IsoTime(text) is { } time => StartPosition.AtTime(time),
                var text => StartPosition.At(text!),
            };
            await using var consumer = await bus.CreateConsumerAsync(parse.GetValue(topic)!, new SubscriptionOptions { Group = parse.GetValue(group)!, StartPosition = start }, cancellationToken);
            var received = 0;
            var idleFor = parse.GetValue(idle);
            while (parse.GetValue(count) is not { } max || received < max)
            {
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                if (idleFor > 0)
                {
                    wait.CancelAfter(TimeSpan.FromSeconds(idleFor));
                }

                ReceivedMessage message;
                try
                {
                    message = await consumer.ReceiveAsync(wait.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                var headers = string.Join(" ", message.Headers.Select(h => $"{h.Key}={h.Value}"));
                AnsiConsole.MarkupLine($"[grey]{Markup.Escape(message.Position)}[/] key=[bold]{Markup.Escape(message.Key ?? "-")}[/] #{message.DeliveryCount} {Markup.Escape(message.GetText())} [grey]{Markup.Escape(headers)}[/]");
                await message.AckAsync(cancellationToken);
                received++;
            }

            return 0;
        });
        return command;
    }

    /// <summary>
    /// An ISO 8601 date and time (UTC unless it names an offset), or null. Only these forms: a lenient parse read
    /// Kafka's position "2:41" (partition 2, offset 41) as 02:41 today.
    /// </summary>
    private static DateTimeOffset? IsoTime(string? text)
    {
        string[] formats = ["yyyy-MM-dd", "yyyy-MM-ddTHH:mm", "yyyy-MM-ddTHH:mm:ss", "yyyy-MM-ddTHH:mm:ss.FFFFFFF", "yyyy-MM-ddTHH:mmzzz", "yyyy-MM-ddTHH:mm:sszzz", "yyyy-MM-ddTHH:mm:ss.FFFFFFFzzz", "yyyy-MM-ddTHH:mm:ssZ", "yyyy-MM-ddTHH:mm:ss.FFFFFFFZ"];
        return DateTimeOffset.TryParseExact(text, formats, System.Globalization.CultureInfo.InvariantCulture, System.Globalization.DateTimeStyles.AssumeUniversal, out var time)
            ? time
            : null;
    }
}
