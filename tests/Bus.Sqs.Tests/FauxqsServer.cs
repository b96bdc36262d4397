using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Bus.Sqs.Tests;

/// <summary>
/// The fauxqs SQS emulator (npm) as a child process on a free 127.0.0.1 port: installed by scripts/install-fauxqs.sh
/// (quick when present), started through scripts/fauxqs-loopback.cjs so that it listens on loopback only, killed on
/// dispose. Fails with the emulator's log tail when it cannot start.
/// </summary>
/// <remarks>
/// Where fauxqs differs from real SQS, the tests rely on the documented SQS behaviour only, except:
/// a FIFO receive returns at most one message per message group (real SQS may return several of one group), which only
/// makes FIFO consumption slower here; fauxqs rejects characters outside the BMP in bodies (the adapter base64-encodes
/// such bodies everywhere, so nothing depends on it); a bad receipt handle is accepted silently (the adapter treats a
/// rejected one as "already settled" anyway).
/// </remarks>
public sealed class FauxqsServer : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Queue<string> _log = new();

    private FauxqsServer(Process process, int port, string version, string nodeVersion)
    {
        _process = process;
        Port = port;
        Version = version;
        NodeVersion = nodeVersion;
    }

    public int Port { get; }

    public string Version { get; }

    public string NodeVersion { get; }

    public string Endpoint => $"http://127.0.0.1:{Port}";

    public string Target => $"native process: fauxqs {Version} (SQS emulator) on Node {NodeVersion.TrimStart('v')}";

    /// <summary>A Bus URI for this server with test credentials (fauxqs does not check them) and short waits.</summary>
    public string Url(string extra = "") => $"sqs://test:test@127.0.0.1:{Port}?region=us-east-1&wait-seconds=1&group-cache-ms=500{extra}";

    public string LogTail
    {
        get
        {
            lock (_log)
            {
                return string.Join('\n', _log);
            }
        }
    }

    public static async Task<FauxqsServer> StartAsync()
    {
        var repo = RepositoryRoot();
        var install = Run("bash", $"\"{Path.Combine(repo, "scripts", "install-fauxqs.sh")}\"", repo, TimeSpan.FromMinutes(5));
        var envFile = Path.Combine(Environment.GetEnvironmentVariable("FAUXQS_DIR") ?? Path.Combine(repo, ".tools", "fauxqs"), "fauxqs.env");
        if (!File.Exists(envFile))
        {
            throw new InvalidOperationException($"fauxqs is not installed ({envFile} missing); install-fauxqs.sh said:\n{install}");
        }

        var env = File.ReadAllLines(envFile).Where(l => l.Contains('=')).ToDictionary(l => l[..l.IndexOf('=')], l => l[(l.IndexOf('=') + 1)..]);
        var start = new ProcessStartInfo(env["FAUXQS_NODE"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            WorkingDirectory = repo,
        };
        start.ArgumentList.Add("--no-warnings");
        start.ArgumentList.Add("--require");
        start.ArgumentList.Add(Path.Combine(repo, "scripts", "fauxqs-loopback.cjs"));
        start.ArgumentList.Add(Path.Combine(repo, "scripts", "fauxqs-server.mjs"));
        start.Environment["FAUXQS_DIR"] = env["FAUXQS_DIR"];
        start.Environment["FAUXQS_PORT"] = "0";
        start.Environment["FAUXQS_LOGGER"] = "false";
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start node");
        var listening = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var log = new Queue<string>();
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (log)
            {
                log.Enqueue(line);
                while (log.Count > 50)
                {
                    log.Dequeue();
                }
            }

            const string Marker = "fauxqs-loopback: listening on ";
            if (line.StartsWith(Marker, StringComparison.Ordinal) && int.TryParse(line[(line.LastIndexOf(':') + 1)..], out var port))
            {
                listening.TrySetResult(port);
            }
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        process.EnableRaisingEvents = true;
        process.Exited += (_, _) => listening.TrySetException(new InvalidOperationException("fauxqs exited"));
        int port;
        try
        {
            port = await listening.Task.WaitAsync(TimeSpan.FromSeconds(30));
            using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
            var ready = Stopwatch.StartNew();
            while (true)
            {
                try
                {
                    using var response = await http.GetAsync($"http://127.0.0.1:{port}/health");
                    if (response.IsSuccessStatusCode)
                    {
                        break;
                    }

                    if (ready.Elapsed >= TimeSpan.FromSeconds(20))
                    {
                        throw new InvalidOperationException($"its health check answered {(int)response.StatusCode} for 20 s");
                    }
                }
                catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && ready.Elapsed < TimeSpan.FromSeconds(20))
                {
                    // Not listening yet, or too busy to answer within the client's timeout (TaskCanceledException: a CI
                    // run failed every SQS case when one health check of a loaded machine took more than 2 s).
                }

                await Task.Delay(100);
            }
        }
        catch (Exception ex)
        {
            try
            {
                process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
            }

            string tail;
            lock (log)
            {
                tail = string.Join('\n', log);
            }

            throw new InvalidOperationException($"fauxqs did not start: {ex.Message}\n--- log tail ---\n{tail}", ex);
        }

        var server = new FauxqsServer(process, port, env["FAUXQS_VERSION"], env["FAUXQS_NODE_VERSION"]);
        lock (log)
        {
            foreach (var line in log)
            {
                server._log.Enqueue(line);
            }
        }

        return server;
    }

    /// <summary>
    /// Freezes the emulator (SIGSTOP): its socket stays open and the kernel still accepts connections on it, but
    /// nothing is answered, as with a broker that hangs.
    /// </summary>
    public Task PauseAsync() => SignalAsync("STOP");

    /// <summary>Thaws what <see cref="PauseAsync"/> froze (SIGCONT).</summary>
    public Task ResumeAsync() => SignalAsync("CONT");

    private async Task SignalAsync(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill", $"-{signal} {_process.Id}") { UseShellExecute = false, RedirectStandardError = true })
            ?? throw new InvalidOperationException("could not start kill");
        var error = await kill.StandardError.ReadToEndAsync();
        await kill.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {_process.Id} failed ({kill.ExitCode}): {error}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    /// <summary>A 127.0.0.1 port nothing listens on (bound, then released).</summary>
    public static int ClosedPort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Bus.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("Bus.sln not found above " + AppContext.BaseDirectory);
    }

    private static string Run(string file, string arguments, string directory, TimeSpan timeout)
    {
        var start = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false, WorkingDirectory = directory };
        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lock (output) { output.AppendLine(e.Data); } } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{file} {arguments} did not finish within {timeout}:\n{output}");
        }

        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {arguments} failed ({process.ExitCode}):\n{output}");
        }

        lock (output)
        {
            return output.ToString();
        }
    }
}
