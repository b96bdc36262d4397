using System.CommandLine;
using Bus.Cli.Commands;
using Spectre.Console;

namespace Bus.Cli;

/// <summary>The <c>bus</c> command tree.</summary>
internal static class BusCli
{
    public static RootCommand CreateRootCommand() => new("Bus: one messaging contract over Kafka, RabbitMQ, SQS, Redis Streams, NATS, Pulsar, MQTT and memory.")
    {
        DemoCommand.Create(),
        ConformanceCommand.Create(),
        SendCommand.Create(),
        ConsumeCommand.Create(),
        BackendsCommand.Create(),
    };

    /// <summary>Runs a command line; a bus error is one clear line (it never contains a password), not a stack trace.</summary>
    public static async Task<int> InvokeAsync(string[] args)
    {
        try
        {
            return await CreateRootCommand().Parse(args).InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (BusException ex)
        {
            AnsiConsole.MarkupLine($"[red]error:[/] {Markup.Escape(ex.Message)}");
            return ex.Reason == BusFailureReason.Configuration ? 2 : 1;
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }
}
