using System.CommandLine;
using Bus.Conformance;
using Spectre.Console;

namespace Bus.Cli.Commands;

/// <summary><c>bus conformance</c>: run the catalogue against any broker and print the matrix row.</summary>
internal static class ConformanceCommand
{
    public static Command Create()
    {
        var url = CommonOptions.Url();
        var cases = new Option<string[]>("--case", "-c") { Description = "Only these cases or categories (e.g. dlq, delivery/round_trip); repeatable." };
        var target = new Option<string?>("--target") { Description = "What the URL points at, for the matrix (e.g. 'RabbitMQ 3.13 on staging')." };
        var unreachable = new Option<string?>("--unreachable-url") { Description = "A URL of the same scheme with a closed port and the password s3cr3t-Pa55word-zq, for errors/unreachable_broker." };
        var scale = new Option<double>("--timeout-scale") { Description = "Multiply every wait (slow brokers).", DefaultValueFactory = _ => 1.0 };
        var output = new Option<string?>("--output", "-o") { Description = "Artifacts folder for matrix.json and matrix.md (default: ./artifacts/conformance)." };
        var command = new Command("conformance", "Run the conformance catalogue against a backend and write the capability matrix.") { url, cases, target, unreachable, scale, output };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = CommonOptions.Resolve(parse.GetValue(url));
            var scheme = options.Url.Split("://")[0];
            var factory = BusTransports.FindForUrl(options.Url);
            if (factory is null)
            {
                AnsiConsole.MarkupLine($"[red]No backend for '{Markup.Escape(scheme)}://' is available in this build.[/]");
                return 2;
            }

            var redacted = MessageBus.Create(options).RedactedUrl;
            var backend = new ConformanceBackend
            {
                Name = factory.Backend,
                Target = parse.GetValue(target) ?? (scheme == "memory" ? "embedded (in process)" : $"endpoint {redacted}"),
                Url = options.Url,
                UnreachableUrl = parse.GetValue(unreachable),
                TimeoutScale = parse.GetValue(scale),
            };
            var filters = parse.GetValue(cases) ?? [];
            var selected = ConformanceCatalogue.All.Where(c => filters.Length == 0 || filters.Any(f => f == c.Category || f == c.Name || f == c.ToString())).ToList();
            AnsiConsole.MarkupLine($"conformance: [bold]{selected.Count}[/] cases on [green]{Markup.Escape(backend.Name)}[/] ({Markup.Escape(backend.Target)})");

            var results = new List<CaseResult>();
            await AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                .StartAsync(async progress =>
                {
                    var task = progress.AddTask("cases", maxValue: selected.Count);
                    foreach (var conformanceCase in selected)
                    {
                        task.Description = conformanceCase.ToString();
                        results.Add(await ConformanceRunner.RunAsync(backend, conformanceCase, cancellationToken));
                        task.Increment(1);
                    }

                    task.Description = "done";
                });

            var table = new Table().AddColumns("case", "outcome", "ms", "counts", "reason");
            foreach (var result in results)
            {
                var outcome = result.Outcome switch
                {
                    CaseOutcome.Passed => "[green]pass[/]",
                    CaseOutcome.Failed => "[red]FAIL[/]",
                    _ => "[yellow]unsupported[/]",
                };
                table.AddRow(
                    $"{result.Category}/{result.Name}",
                    outcome,
                    result.Milliseconds.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Markup.Escape(string.Join(" ", result.Counts.Select(c => $"{c.Key}={c.Value}"))),
                    Markup.Escape(result.Reason ?? ""));
            }

            AnsiConsole.Write(table);
            var report = new BackendReport(backend.Name, backend.Target, DateTimeOffset.UtcNow, results);
            var directory = parse.GetValue(output) ?? Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "conformance");
            MatrixWriter.Write(report, directory);
            var failed = results.Count(r => r.Outcome == CaseOutcome.Failed);
            AnsiConsole.MarkupLine($"{results.Count(r => r.Outcome == CaseOutcome.Passed)} passed, {failed} failed, {results.Count(r => r.Outcome == CaseOutcome.Unsupported)} unsupported; matrix: {Markup.Escape(Path.Combine(directory, "matrix.md"))}");
            return failed == 0 ? 0 : 1;
        });
        return command;
    }
}
