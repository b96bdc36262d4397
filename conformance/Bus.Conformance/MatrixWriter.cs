using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace Bus.Conformance;

/// <summary>
/// Writes the capability matrix: one row file per backend (<c>rows/&lt;backend&gt;.json</c>), and from all rows
/// <c>matrix.json</c> and <c>matrix.md</c>. Safe when several test processes write rows at once.
/// </summary>
public static class MatrixWriter
{
    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };

    /// <summary>
    /// The artifacts folder: <c>BUS_CONFORMANCE_ARTIFACTS</c> if set, else <c>artifacts/conformance</c> under the
    /// nearest folder (from the current one upwards) that holds <c>Bus.sln</c>, else under the current folder.
    /// </summary>
    public static string DefaultDirectory
    {
        get
        {
            if (Environment.GetEnvironmentVariable("BUS_CONFORMANCE_ARTIFACTS") is { Length: > 0 } configured)
            {
                return configured;
            }

            for (var dir = new DirectoryInfo(Directory.GetCurrentDirectory()); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "Bus.sln")))
                {
                    return Path.Combine(dir.FullName, "artifacts", "conformance");
                }
            }

            return Path.Combine(Directory.GetCurrentDirectory(), "artifacts", "conformance");
        }
    }

    /// <summary>Stores one backend's row and regenerates the matrix from every row present.</summary>
    /// <param name="report">The row.</param>
    /// <param name="directory">The artifacts folder; <see cref="DefaultDirectory"/> by default.</param>
    public static void Write(BackendReport report, string? directory = null)
    {
        ArgumentNullException.ThrowIfNull(report);
        directory ??= DefaultDirectory;
        var rows = Path.Combine(directory, "rows");
        Directory.CreateDirectory(rows);
        using var gate = Lock(directory);
        File.WriteAllText(Path.Combine(rows, report.Backend + ".json"), JsonSerializer.Serialize(report, Json));
        var all = Directory.GetFiles(rows, "*.json")
            .Select(file => JsonSerializer.Deserialize<BackendReport>(File.ReadAllText(file), Json)!)
            .OrderBy(r => Order(r.Backend))
            .ThenBy(r => r.Backend, StringComparer.Ordinal)
            .ToList();
        File.WriteAllText(Path.Combine(directory, "matrix.json"), JsonSerializer.Serialize(new { generated = DateTimeOffset.UtcNow, backends = all }, Json));
        File.WriteAllText(Path.Combine(directory, "matrix.md"), ToMarkdown(all));
    }

    /// <summary>The matrix as a Markdown table (cases down, backends across) with the reasons below it.</summary>
    /// <param name="reports">The rows.</param>
    public static string ToMarkdown(IReadOnlyList<BackendReport> reports)
    {
        ArgumentNullException.ThrowIfNull(reports);
        var text = new StringBuilder();
        text.AppendLine("| backend | ran against | passed | failed | unsupported |");
        text.AppendLine("|---|---|---|---|---|");
        foreach (var report in reports)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"| {report.Backend} | {report.Target} | {Count(report, CaseOutcome.Passed)} | {Count(report, CaseOutcome.Failed)} | {Count(report, CaseOutcome.Unsupported)} |");
        }

        text.AppendLine();
        text.Append("| case |");
        foreach (var report in reports)
        {
            text.Append(CultureInfo.InvariantCulture, $" {report.Backend} |");
        }

        text.AppendLine();
        text.Append("|---|");
        text.AppendLine(string.Concat(Enumerable.Repeat("---|", reports.Count)));
        var notes = new List<string>();
        foreach (var conformanceCase in ConformanceCatalogue.All)
        {
            text.Append(CultureInfo.InvariantCulture, $"| {conformanceCase.Category}/{conformanceCase.Name} |");
            foreach (var report in reports)
            {
                var result = report.Cases.FirstOrDefault(c => c.Name == conformanceCase.Name);
                string cell;
                if (result is null)
                {
                    cell = "not run";
                }
                else
                {
                    cell = result.Outcome switch
                    {
                        CaseOutcome.Passed => "pass",
                        CaseOutcome.Failed => "**FAIL**",
                        _ => "unsupported",
                    };
                    if (result.Reason is { Length: > 0 } reason)
                    {
                        notes.Add($"{report.Backend} {conformanceCase.Category}/{conformanceCase.Name}: {reason.Replace("|", "/", StringComparison.Ordinal)}");
                        cell += $" [{notes.Count}]";
                    }
                }

                text.Append(CultureInfo.InvariantCulture, $" {cell} |");
            }

            text.AppendLine();
        }

        if (notes.Count > 0)
        {
            text.AppendLine();
            for (var i = 0; i < notes.Count; i++)
            {
                text.AppendLine(CultureInfo.InvariantCulture, $"{i + 1}. {notes[i]}");
            }
        }

        return text.ToString();
    }

    private static int Count(BackendReport report, CaseOutcome outcome) => report.Cases.Count(c => c.Outcome == outcome);

    /// <summary>A row's place: by its backend family (a variant such as sqs-fifo or rabbitmq-classic follows its family's default row).</summary>
    private static int Order(string backend)
        => Array.IndexOf(["memory", "rabbitmq", "redis", "kafka", "sqs", "nats", "mqtt", "pulsar"], backend.Split('-')[0]) is var i and >= 0 ? i : 100;

    private static FileStream Lock(string directory)
    {
        var path = Path.Combine(directory, ".lock");
        for (var attempt = 0; ; attempt++)
        {
            try
            {
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (attempt < 200)
            {
                Thread.Sleep(50);
            }
        }
    }
}
