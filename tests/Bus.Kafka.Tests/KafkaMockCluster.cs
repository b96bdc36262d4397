using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;

namespace Bus.Kafka.Tests;

/// <summary>
/// librdkafka's mock cluster (3 brokers speaking the real Kafka protocol on 127.0.0.1), hosted by Debian's kcat as
/// a child process: <c>kcat -X test.mock.num.brokers=3 -X socket.nagle.disable=true -b localhost:1 -C -t keepalive -d mock</c>
/// (the brokers' sockets take kcat's options; with Nagle's algorithm on, responses waited for delayed ACKs). It prints
/// <c>bootstrap.servers=…</c> on stderr and keeps the cluster up while it runs. Not a Kafka broker: see
/// ENVIRONMENT.md for what it lacks (CreateTopics, OffsetsForTimes, ListGroups, DeleteTopics).
/// </summary>
public sealed partial class KafkaMockCluster : IAsyncDisposable
{
    private readonly Process _process;

    private KafkaMockCluster(Process process, string bootstrapServers, string version)
    {
        _process = process;
        BootstrapServers = bootstrapServers;
        Version = version;
    }

    /// <summary><c>127.0.0.1:port,…</c>.</summary>
    public string BootstrapServers { get; }

    /// <summary>kcat's version line, naming its librdkafka.</summary>
    public string Version { get; }

    /// <summary>Starts kcat and waits for the bootstrap list (fails with the log tail if it does not come).</summary>
    public static async Task<KafkaMockCluster> StartAsync(TimeSpan timeout)
    {
        var version = await KcatVersionAsync();
        var start = new ProcessStartInfo("kcat")
        {
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[] { "-X", "test.mock.num.brokers=3", "-X", "socket.nagle.disable=true", "-b", "localhost:1", "-C", "-t", "keepalive", "-d", "mock" })
        {
            start.ArgumentList.Add(argument);
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException("kcat did not start");
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new StringBuilder();
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (log)
            {
                if (log.Length < 64 * 1024)
                {
                    log.AppendLine(e.Data);
                }
            }

            if (Bootstrap().Match(e.Data) is { Success: true } match)
            {
                found.TrySetResult(match.Groups[1].Value);
            }
        };
        process.OutputDataReceived += (_, _) => { };
        process.BeginErrorReadLine();
        process.BeginOutputReadLine();
        try
        {
            var servers = await found.Task.WaitAsync(timeout);
            var cluster = new KafkaMockCluster(process, servers, version);
            // If the test host ends before the fixture is disposed, take the cluster with it.
            AppDomain.CurrentDomain.ProcessExit += cluster.KillOnExit;
            return cluster;
        }
        catch (TimeoutException)
        {
            process.Kill(entireProcessTree: true);
            string tail;
            lock (log)
            {
                tail = log.ToString();
            }

            throw new InvalidOperationException($"the librdkafka mock cluster (kcat) printed no bootstrap.servers within {timeout.TotalSeconds:0} s; exit: {(process.HasExited ? process.ExitCode.ToString(System.Globalization.CultureInfo.InvariantCulture) : "running")}; log tail:\n{tail[Math.Max(0, tail.Length - 4000)..]}");
        }
    }

    /// <summary>Freezes the process (SIGSTOP): its ports stay open, nothing answers.</summary>
    public Task PauseAsync() => SignalAsync("STOP");

    /// <summary>Thaws a paused process (SIGCONT).</summary>
    public Task ResumeAsync() => SignalAsync("CONT");

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        AppDomain.CurrentDomain.ProcessExit -= KillOnExit;
        if (!_process.HasExited)
        {
            await SignalAsync("CONT"); // a stopped process would not act on the kill until then
        }

        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private async Task SignalAsync(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", $"-{signal} {_process.Id}") { UseShellExecute = false })
            ?? throw new InvalidOperationException("kill did not start");
        await kill.WaitForExitAsync();
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {_process.Id} exited with {kill.ExitCode}");
        }
    }

    private void KillOnExit(object? sender, EventArgs e)
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
        }
    }

    private static async Task<string> KcatVersionAsync()
    {
        var start = new ProcessStartInfo("kcat", "-V") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("kcat -V did not start (apt-get install kcat)");
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        var match = VersionLine().Match(output);
        return match.Success ? $"kcat {match.Groups[1].Value}, librdkafka {match.Groups[2].Value}" : "kcat (version unknown)";
    }

    [GeneratedRegex(@"bootstrap\.servers=([0-9.:,]+)")]
    private static partial Regex Bootstrap();

    [GeneratedRegex(@"Version (\S+) .*librdkafka (\S+)")]
    private static partial Regex VersionLine();
}
