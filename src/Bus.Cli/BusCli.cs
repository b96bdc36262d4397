using System.CommandLine;
using Bus.Cli.Commands;
using Spectre.Console;

namespace Bus.Cli;

/// <summary>The <c>bus</c> command tree.</summary>
internal static class BusCli
{
    /// <summary>
    /// Errors and warnings: standard error, so that scripts reading a command's output (<c>bus consume</c>) do not
    /// take them for data.
    /// </summary>
    public static IAnsiConsole Errors { get; set; } = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });

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
        // Spectre.Console assumes 80 columns when it cannot ask a terminal, and breaks table cells mid-word; a log file
        // or a pipe has no width to respect.
        if (Console.IsOutputRedirected)
        {
            AnsiConsole.Profile.Width = 240;
        }

        if (Console.IsErrorRedirected)
        {
            Errors.Profile.Width = 240;
        }

        try
        {
            var parsed = CreateRootCommand().Parse(args);
            var exitCode = await parsed.InvokeAsync(new InvocationConfiguration { EnableDefaultExceptionHandler = false, Error = Errors.Profile.Out.Writer });

            // A command line that does not parse is a usage error, 2 as for a bad --url or --case (System.CommandLine
            // returns 1, which scripts read as "ran and failed").
            return parsed.Errors.Count > 0 && exitCode == 1 ? 2 : exitCode;
        }
        catch (BusException ex)
        {
            // What the user typed was wrong (a URI, a setting, a message's header): a usage error.
            return Error(ex.Message, ex.Reason is BusFailureReason.Configuration or BusFailureReason.InvalidMessage ? 2 : 1);
        }
        catch (OperationCanceledException)
        {
            return 130;
        }
    }

    /// <summary>Prints <c>error: message</c> to standard error and returns <paramref name="exitCode"/>.</summary>
    public static int Error(string message, int exitCode)
    {
        Errors.MarkupLine($"[red]error:[/] {Markup.Escape(message)}");
        return exitCode;
    }

    /// <summary>Prints <c>note: message</c> to standard error.</summary>
    public static void Note(string message) => Errors.MarkupLine($"[yellow]note:[/] {Markup.Escape(message)}");
}
