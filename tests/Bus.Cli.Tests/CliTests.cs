using Spectre.Console;
using Xunit;

namespace Bus.Cli.Tests;

/// <summary>The CLI in process: the main job (demo) and the conformance command on the embedded default.</summary>
[Collection("console")] // the commands write to the shared AnsiConsole
public class CliTests
{
    private static async Task<(int ExitCode, string Output)> RunAsync(params string[] args)
    {
        var output = new StringWriter();
        var previous = AnsiConsole.Console;
        AnsiConsole.Console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = AnsiSupport.No,
            ColorSystem = ColorSystemSupport.NoColors,
            Interactive = InteractionSupport.No,
        });
        AnsiConsole.Console.Profile.Width = 200;
        try
        {
            var exitCode = await BusCli.InvokeAsync(args);
            return (exitCode, output.ToString());
        }
        finally
        {
            AnsiConsole.Console = previous;
        }
    }

    [Fact]
    public async Task Demo_shows_per_key_order_a_dead_letter_and_its_redrive()
    {
        var (exitCode, output) = await RunAsync("demo", "--url", "memory://");
        Assert.Equal(0, exitCode);
        Assert.Contains("1 → 2 → 3 → 4 → 5", output, StringComparison.Ordinal);
        Assert.DoesNotContain("│ no ", output, StringComparison.Ordinal);
        Assert.Contains("card declined: issuer unavailable", output, StringComparison.Ordinal);
        Assert.Contains("redrove 1", output, StringComparison.Ordinal);
        Assert.Contains("payment 42", output.Split("redrove 1")[1], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Conformance_runs_the_selected_cases_and_writes_the_matrix()
    {
        var directory = Directory.CreateTempSubdirectory("bus-cli-conformance").FullName;
        var (exitCode, output) = await RunAsync("conformance", "--url", "memory://", "--case", "errors", "--output", directory);
        Assert.Equal(0, exitCode);
        Assert.Contains("4 passed, 0 failed, 1 unsupported", output, StringComparison.Ordinal);
        var matrix = await File.ReadAllTextAsync(Path.Combine(directory, "matrix.md"));
        Assert.Contains("| memory | embedded (in process) | 4 | 0 | 1 |", matrix, StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(directory, "matrix.json")));
    }

    [Fact]
    public async Task Backends_lists_every_scheme_and_the_embedded_default()
    {
        var (exitCode, output) = await RunAsync("backends");
        Assert.Equal(0, exitCode);
        foreach (var scheme in new[] { "memory", "rabbitmq", "kafka", "sqs", "sqs-fifo", "redis", "nats", "pulsar", "mqtt" })
        {
            Assert.Contains(scheme, output, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task An_unknown_scheme_fails_with_a_message_that_names_it_and_hides_the_password()
    {
        var (exitCode, output) = await RunAsync("send", "t", "x", "--url", "smtp://me:hunter2-pw@mail");
        Assert.Equal(2, exitCode);
        Assert.Contains("unknown scheme 'smtp'", output, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2-pw", output, StringComparison.Ordinal);
    }
}
