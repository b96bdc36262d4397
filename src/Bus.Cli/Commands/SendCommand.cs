using System.CommandLine;
using Spectre.Console;

namespace Bus.Cli.Commands;

/// <summary><c>bus send</c>: publish text messages.</summary>
internal static class SendCommand
{
    public static Command Create()
    {
        var url = CommonOptions.Url();
        var topic = new Argument<string>("topic") { Description = "The topic." };
        var text = new Argument<string>("text") { Description = "The message body (UTF-8 text)." };
        var key = new Option<string?>("--key", "-k") { Description = "Ordering key." };
        var headers = new Option<string[]>("--header", "-H") { Description = "A header as name=value; repeatable.", AllowMultipleArgumentsPerToken = false };
        var count = new Option<int>("--count", "-n") { Description = "Send the message this many times.", DefaultValueFactory = _ => 1 }.AtLeast(1);
        var command = new Command("send", "Publish a text message.") { url, topic, text, key, headers, count };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var parsedHeaders = new List<KeyValuePair<string, string>>();
            foreach (var header in parse.GetValue(headers) ?? [])
            {
                var equals = header.IndexOf('=');
                if (equals <= 0)
                {
                    return BusCli.Error($"--header must be name=value: {header}", 2);
                }

                parsedHeaders.Add(new(header[..equals], header[(equals + 1)..]));
            }

            await using var bus = MessageBus.Create(CommonOptions.Resolve(parse.GetValue(url)));
            CommonOptions.WarnIfMemory(bus, "no other command will see what is sent");
            var batch = new List<OutgoingMessage>();
            for (var i = 0; i < parse.GetValue(count); i++)
            {
                var message = OutgoingMessage.FromText(parse.GetValue(text)!, parse.GetValue(key));
                foreach (var (name, value) in parsedHeaders)
                {
                    message.Headers[name] = value;
                }

                batch.Add(message);
            }

            await bus.PublishBatchAsync(parse.GetValue(topic)!, batch, cancellationToken);
            AnsiConsole.MarkupLine($"published {batch.Count} to [bold]{Markup.Escape(parse.GetValue(topic)!)}[/] on {Markup.Escape(bus.RedactedUrl)}");
            return 0;
        });
        return command;
    }
}
