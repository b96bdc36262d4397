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
        var unreachable = new Option<string?>("--unreachable-url") { Description = "For errors/unreachable_broker: a URL of the same scheme that points at a closed port, with the password s3cr3t-Pa55word-zq (the case checks that it never appears in the error). Default: --url's scheme and query, 127.0.0.1 and a closed port." };
        var scale = new Option<double>("--timeout-scale") { Description = "Multiply every wait (slow brokers).", DefaultValueFactory = _ => 1.0 }
            .Must(value => value is > 0, "must be greater than 0");
        var output = new Option<string?>("--output", "-o") { Description = "Artifacts folder for matrix.json and matrix.md (default: ./artifacts/conformance; a run of selected cases writes only with -o)." };
        var command = new Command("conformance", "Run the conformance catalogue against a backend and write the capability matrix.") { url, cases, target, unreachable, scale, output };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var options = CommonOptions.Resolve(parse.GetValue(url));
            var scheme = options.Url.Split("://")[0];
            var factory = BusTransports.FindForUrl(options.Url);
            if (factory is null)
            {
                return BusCli.Error($"no backend for '{scheme}://' is available in this build.", 2);
            }

            var filters = parse.GetValue(cases) ?? [];
            var unknown = filters.Where(f => !ConformanceCatalogue.All.Any(c => Matches(c, f))).ToList();
            if (unknown.Count > 0)
            {
                // A misspelt case would otherwise run nothing and pass.
                var categories = string.Join(", ", ConformanceCatalogue.All.Select(c => c.Category).Distinct());
                return BusCli.Error($"no case or category '{string.Join("', '", unknown)}'. Categories: {categories}; cases are category/name (bus conformance lists them all when run without --case).", 2);
            }

            string redacted;
            await using (var probe = MessageBus.Create(options))
            {
                redacted = probe.RedactedUrl;
            }

            var backend = new ConformanceBackend
            {
                Name = factory.Schemes[0], // the row's name: sqs-fifo's factory reports its backend as "sqs"
                Target = parse.GetValue(target) ?? (scheme == "memory" ? "embedded (in process)" : $"endpoint {redacted}"),
                Url = options.Url,
                UnreachableUrl = parse.GetValue(unreachable),
                TimeoutScale = parse.GetValue(scale),
            };
            var selected = ConformanceCatalogue.All.Where(c => filters.Length == 0 || filters.Any(f => Matches(c, f))).ToList();
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
            var failed = results.Count(r => r.Outcome == CaseOutcome.Failed);
            var summary = $"{results.Count(r => r.Outcome == CaseOutcome.Passed)} passed, {failed} failed, {results.Count(r => r.Outcome == CaseOutcome.Unsupported)} unsupported";
            var directory = parse.GetValue(output);
            if (directory is null && filters.Length > 0)
            {
                // The matrix holds one row per backend: a row of a few cases would replace the whole catalogue's.
                AnsiConsole.MarkupLine($"{summary}; matrix not written (a selection of cases; -o writes it)");
                return failed == 0 ? 0 : 1;
            }

            directory ??= Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "conformance");
            try
            {
                MatrixWriter.Write(new BackendReport(backend.Name, backend.Target, DateTimeOffset.UtcNow, results), directory);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                AnsiConsole.MarkupLine(Markup.Escape(summary));
                return BusCli.Error($"cannot write the matrix to {directory}: {ex.Message}", 1);
            }

            AnsiConsole.MarkupLine($"{summary}; matrix: {Markup.Escape(Path.Combine(directory, "matrix.md"))}");
            return failed == 0 ? 0 : 1;
        });
        return command;
    }

    private static bool Matches(ConformanceCase conformanceCase, string filter)
        => filter == conformanceCase.Category || filter == conformanceCase.Name || filter == conformanceCase.ToString();
}
