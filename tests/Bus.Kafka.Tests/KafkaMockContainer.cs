using System.Text.RegularExpressions;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Images;

namespace Bus.Kafka.Tests;

/// <summary>
/// librdkafka's mock cluster in the container <c>local/kafka-mock:bookworm</c> (docker/kafka-mock: Debian's kcat as
/// entrypoint), started by Testcontainers with host networking because the mock brokers listen on random ports of
/// 127.0.0.1; the bootstrap list is read from the container's log. Never pulls.
/// </summary>
public sealed partial class KafkaMockContainer : IAsyncDisposable
{
    /// <summary>The image scripts/provision.sh (or <c>docker build -t local/kafka-mock:bookworm docker/kafka-mock</c>) builds.</summary>
    public const string Image = "local/kafka-mock:bookworm";

    private readonly IContainer _container;

    private KafkaMockContainer(IContainer container, string bootstrapServers, string version)
    {
        _container = container;
        BootstrapServers = bootstrapServers;
        Version = version;
    }

    /// <summary><c>127.0.0.1:port,…</c>.</summary>
    public string BootstrapServers { get; }

    /// <summary>The kcat and librdkafka versions inside the image.</summary>
    public string Version { get; }

    /// <summary>Starts the container and waits for the bootstrap list (fails with the log tail if it does not come).</summary>
    public static async Task<KafkaMockContainer> StartAsync(TimeSpan timeout)
    {
        // What Testcontainers needs against this machine's docker 20.10 without Ryuk, unless the environment says otherwise.
        SetDefault("DOCKER_API_VERSION", "1.41");
        SetDefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1");
        SetDefault("TESTCONTAINERS_RYUK_DISABLED", "true");

        var container = new ContainerBuilder(Image)
            .WithName($"bus-kafka-mock-{Guid.NewGuid():N}")
            .WithLabel("bus.kind", "kafka-mock")
            .WithImagePullPolicy(PullPolicy.Never)
            .WithCreateParameterModifier(parameters => parameters.HostConfig!.NetworkMode = "host")
            .Build();
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await container.StartAsync(cancel.Token);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            await container.DisposeAsync();
            throw new ContainerUnavailableException($"{Image} could not be started ({ex.GetType().Name}: {ex.Message})", ex);
        }

        var log = "";
        while (!cancel.IsCancellationRequested)
        {
            var (stdout, stderr) = await container.GetLogsAsync(timestampsEnabled: false, ct: CancellationToken.None);
            log = stdout + stderr;
            if (Bootstrap().Match(log) is { Success: true } match)
            {
                var version = await VersionAsync(container);
                return new KafkaMockContainer(container, match.Groups[1].Value, version);
            }

            await Task.Delay(100, CancellationToken.None);
        }

        await container.DisposeAsync();
        throw new InvalidOperationException($"the mock cluster container {Image} logged no bootstrap.servers within {timeout.TotalSeconds:0} s; log tail:\n{log[Math.Max(0, log.Length - 4000)..]}");
    }

    /// <summary>Freezes the container (docker pause): its ports stay open, nothing answers.</summary>
    public Task PauseAsync() => _container.PauseAsync();

    /// <summary>Thaws a paused container.</summary>
    public Task ResumeAsync() => _container.UnpauseAsync();

    /// <inheritdoc />
    public ValueTask DisposeAsync() => _container.DisposeAsync();

    private static async Task<string> VersionAsync(IContainer container)
    {
        try
        {
            var result = await container.ExecAsync(["kcat", "-V"]);
            var match = VersionLine().Match(result.Stdout + result.Stderr);
            return match.Success ? $"kcat {match.Groups[1].Value}, librdkafka {match.Groups[2].Value}" : "kcat (version unknown)";
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            return "kcat (version unknown: " + ex.GetType().Name + ")";
        }
    }

    private static void SetDefault(string name, string value)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(name)))
        {
            Environment.SetEnvironmentVariable(name, value);
        }
    }

    /// <summary>Docker or the image is not there (as opposed to a container that started and failed).</summary>
    public sealed class ContainerUnavailableException(string message, Exception inner) : Exception(message, inner);

    [GeneratedRegex(@"bootstrap\.servers=([0-9.:,]+)")]
    private static partial Regex Bootstrap();

    [GeneratedRegex(@"Version (\S+) .*librdkafka (\S+)")]
    private static partial Regex VersionLine();
}
