using Spectre.Console;
using Xunit;

namespace Bus.Cli.Tests;

/// <summary>The CLI in process: the main job (demo) and the conformance command on the embedded default.</summary>
[Collection("console")] // the commands write to the shared AnsiConsole
public class CliTests
{
    private static async Task<(int ExitCode, string Output)> RunAsync(params string[] args)
    {
        var (exitCode, output, errors) = await RunSplitAsync(args);
        return (exitCode, output + errors);
    }

    /// <summary>Runs a command line with standard output and the error console captured apart.</summary>
    private static async Task<(int ExitCode, string Output, string Errors)> RunSplitAsync(params string[] args)
    {
        var output = new StringWriter();
        var errors = new StringWriter();
        var (previous, previousErrors) = (AnsiConsole.Console, BusCli.Errors);
        AnsiConsole.Console = Capture(output);
        BusCli.Errors = Capture(errors);
        try
        {
            var exitCode = await BusCli.InvokeAsync(args);
            return (exitCode, output.ToString(), errors.ToString());
        }
        finally
        {
            (AnsiConsole.Console, BusCli.Errors) = (previous, previousErrors);
        }

        static IAnsiConsole Capture(TextWriter writer)
        {
            var console = AnsiConsole.Create(new AnsiConsoleSettings
            {
                Out = new AnsiConsoleOutput(writer),
                Ansi = AnsiSupport.No,
                ColorSystem = ColorSystemSupport.NoColors,
                Interactive = InteractionSupport.No,
            });
            console.Profile.Width = 200;
            return console;
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
        Assert.Contains("5 passed, 0 failed, 1 unsupported", output, StringComparison.Ordinal);
        var matrix = await File.ReadAllTextAsync(Path.Combine(directory, "matrix.md"));
        Assert.Contains("| memory | embedded (in process) | 5 | 0 | 1 |", matrix, StringComparison.Ordinal);
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

    [Theory]
    [InlineData("smtp://me:hunter2-pw@mail", "unknown scheme 'smtp'")]
    [InlineData("me:hunter2-pw@mail", "has no scheme")]
    [InlineData("memory://?retension=5&pasword=hunter2-pw", "'pasword', 'retension'")]
    public async Task A_bad_url_fails_on_standard_error_with_a_message_that_names_the_fault_and_hides_the_password(string url, string expected)
    {
        var (exitCode, output, errors) = await RunSplitAsync("send", "t", "x", "--url", url);
        Assert.Equal(2, exitCode);
        Assert.Equal("", output);
        Assert.Contains(expected, errors, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2-pw", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_misspelt_case_is_an_error_and_not_an_empty_pass()
    {
        var (exitCode, output, errors) = await RunSplitAsync("conformance", "--url", "memory://", "--case", "errors/ilegal_topic");
        Assert.Equal(2, exitCode);
        Assert.Equal("", output);
        Assert.Contains("no case or category 'errors/ilegal_topic'", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_selection_of_cases_leaves_the_matrix_alone_unless_told_where_to_write()
    {
        var (exitCode, output) = await RunAsync("conformance", "--url", "memory://", "--case", "errors/illegal_topic");
        Assert.Equal(0, exitCode);
        Assert.Contains("1 passed, 0 failed, 0 unsupported; matrix not written", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_unwritable_matrix_folder_is_one_error_line_and_exit_code_1()
    {
        var blocker = Path.GetTempFileName(); // a file where the folder should be
        var (exitCode, _, errors) = await RunSplitAsync("conformance", "--url", "memory://", "--case", "errors/illegal_topic", "--output", Path.Combine(blocker, "sub"));
        Assert.Equal(1, exitCode);
        Assert.StartsWith("error: cannot write the matrix to ", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Send_on_memory_says_that_nothing_outside_the_command_sees_it()
    {
        var (exitCode, output, errors) = await RunSplitAsync("send", "t", "x", "--url", "memory://", "-n", "2");
        Assert.Equal(0, exitCode);
        Assert.Contains("published 2 to t", output, StringComparison.Ordinal);
        Assert.Contains("note: memory:// lives inside this one command", errors, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_command_line_that_does_not_parse_is_a_usage_error_with_exit_code_2()
    {
        var (exitCode, _, errors) = await RunSplitAsync("send", "t", "x", "--count", "many");
        Assert.Equal(2, exitCode);
        Assert.Contains("many", errors, StringComparison.Ordinal);

        var (scale, _, scaleErrors) = await RunSplitAsync("conformance", "--url", "memory://", "--timeout-scale", "slow");
        Assert.Equal(2, scale);
        Assert.Contains("slow", scaleErrors, StringComparison.Ordinal);

        var (unknown, _, _) = await RunSplitAsync("sned", "t", "x");
        Assert.Equal(2, unknown);
    }

    [Fact]
    public async Task A_reserved_header_is_a_usage_error_that_names_it_and_sends_nothing()
    {
        var (exitCode, output, errors) = await RunSplitAsync("send", "t", "x", "--url", "memory://", "--header", "bus-message-id=mine");
        Assert.Equal(2, exitCode);
        Assert.Contains("'bus-message-id'", errors, StringComparison.Ordinal);
        Assert.DoesNotContain("published", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", errors, StringComparison.Ordinal);
    }

    /// <summary>
    /// <c>--from</c> reads a time only in ISO 8601 form: a lenient parse once read "0:5" (Kafka's position form,
    /// partition:offset) as 00:05 today, and a new group silently started from there.
    /// </summary>
    [Fact]
    public async Task Consume_from_reads_a_position_with_a_colon_as_a_position_and_an_iso_time_as_a_time()
    {
        var (position, _, positionErrors) = await RunSplitAsync("consume", "t", "--url", "memory://", "--from", "0:5", "--idle-seconds", "0.3");
        Assert.NotEqual(0, position); // memory:// positions are offsets: "0:5" is refused as one, not taken for a time
        Assert.Contains("0:5", positionErrors, StringComparison.Ordinal);

        var (time, _, timeErrors) = await RunSplitAsync("consume", "t", "--url", "memory://", "--from", "2026-01-01T00:00:00Z", "--idle-seconds", "0.3");
        Assert.True(time == 0, timeErrors);
    }
}
