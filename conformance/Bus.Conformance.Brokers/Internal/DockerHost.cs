using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using Docker.DotNet;
using Docker.DotNet.Models;
using DotNet.Testcontainers.Configurations;

namespace Bus.Conformance.Brokers.Internal;

/// <summary>The few Docker API calls the fixtures make themselves, each bounded by a short timeout.</summary>
internal static class DockerHost
{
    /// <summary>Label on every container a fixture creates: the id of the process that created it.</summary>
    public const string ProcessLabel = "bus.conformance.pid";

    /// <summary>Label on every container a fixture creates: the broker kind.</summary>
    public const string KindLabel = "bus.conformance.kind";

    /// <summary>Where every container's ports are bound on the host.</summary>
    public const string Loopback = "127.0.0.1";

    /// <summary>
    /// For every container a fixture creates: its ports bound on <see cref="Loopback"/> only, never 0.0.0.0; and the
    /// image's HEALTHCHECK off, since readiness is probed from the host (the broker's protocol or log line) and the
    /// check would only cost CPU and fill the log a failure shows (and a plain-text check cannot pass on a TLS port).
    /// </summary>
    public static void LoopbackOnlyWithoutHealthcheck(CreateContainerParameters parameters)
    {
        foreach (var binding in parameters.HostConfig?.PortBindings?.Values.SelectMany(b => b) ?? [])
        {
            binding.HostIP = Loopback;
        }

        parameters.Healthcheck = new() { Test = ["NONE"] };
    }

    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(10);
    private static readonly Lazy<DockerClient> LazyClient = new(CreateClient);
    private static readonly ConcurrentDictionary<string, Task<bool>> ImagePresence = new(StringComparer.Ordinal);
    private static readonly Lazy<Task> StaleSweep = new(RemoveStaleContainersAsync);

    /// <summary>Whether <paramref name="image"/> is present locally. Asks the daemon once per process and image.</summary>
    public static async Task<bool> ImageExistsAsync(string image, CancellationToken cancellationToken)
    {
        var presence = ImagePresence.GetOrAdd(image, static i => AskImageExistsAsync(i));
        try
        {
            return await presence.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DockerUnavailableException)
        {
            ImagePresence.TryRemove(image, out _);
            throw;
        }
    }

    /// <summary>Removes a container and its anonymous volumes; a missing container is not an error.</summary>
    public static async Task RemoveContainerAsync(string id, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            await LazyClient.Value.Containers.RemoveContainerAsync(id, new ContainerRemoveParameters { Force = true, RemoveVolumes = true }, timeout.Token).ConfigureAwait(false);
        }
        catch (DockerContainerNotFoundException)
        {
        }
        catch (DockerApiException e) when (e.StatusCode is HttpStatusCode.NotFound or HttpStatusCode.Conflict)
        {
            // Conflict: removal already in progress.
        }
    }

    /// <summary>The container's state ("running", "exited", ...) and exit code, or null if it no longer exists.</summary>
    public static async Task<State?> GetStateAsync(string id, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(CallTimeout);
        try
        {
            var response = await LazyClient.Value.Containers.InspectContainerAsync(id, timeout.Token).ConfigureAwait(false);
            return response.State;
        }
        catch (DockerContainerNotFoundException)
        {
            return null;
        }
    }

    /// <summary>
    /// Once per process: removes containers left behind by test processes that no longer exist (killed before they
    /// could dispose their fixtures; without Ryuk nothing else would).
    /// </summary>
    public static Task EnsureStaleContainersRemovedAsync(CancellationToken cancellationToken) =>
        StaleSweep.Value.WaitAsync(cancellationToken);

    private static async Task RemoveStaleContainersAsync()
    {
        // Process ids mean something only for a daemon on this machine.
        if (TryGetEndpointConfiguration()?.Endpoint?.Scheme != "unix")
        {
            return;
        }

        try
        {
            using var timeout = new CancellationTokenSource(CallTimeout);
            var containers = await LazyClient.Value.Containers.ListContainersAsync(
                new ContainersListParameters
                {
                    All = true,
                    Filters = new Dictionary<string, IDictionary<string, bool>> { ["label"] = new Dictionary<string, bool> { [ProcessLabel] = true } },
                },
                timeout.Token).ConfigureAwait(false);
            foreach (var container in containers)
            {
                if (container.Labels.TryGetValue(ProcessLabel, out var pidText)
                    && int.TryParse(pidText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var pid)
                    && !IsAlive(pid))
                {
                    await RemoveContainerAsync(container.ID, CancellationToken.None).ConfigureAwait(false);
                }
            }
        }
        catch (Exception e) when (e is DockerApiException or HttpRequestException or OperationCanceledException or IOException)
        {
            // Best effort: a failure here must not fail a test that would otherwise run.
        }
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static async Task<bool> AskImageExistsAsync(string image)
    {
        using var timeout = new CancellationTokenSource(CallTimeout);
        try
        {
            await LazyClient.Value.Images.InspectImageAsync(image, timeout.Token).ConfigureAwait(false);
            return true;
        }
        catch (DockerImageNotFoundException)
        {
            return false;
        }
        catch (DockerApiException e) when (e.StatusCode == HttpStatusCode.NotFound)
        {
            return false;
        }
        catch (Exception e) when (e is DockerApiException or HttpRequestException or OperationCanceledException or IOException or TimeoutException or System.Net.Sockets.SocketException)
        {
            throw new DockerUnavailableException(DescribeFailure(e), e);
        }
    }

    private static string DescribeFailure(Exception e)
    {
        var endpoint = TryGetEndpoint();
        var hint = e.Message.Contains("version", StringComparison.OrdinalIgnoreCase)
            ? " (an API version mismatch: export DOCKER_API_VERSION, see artifacts/testcontainers.env written by scripts/provision.sh)"
            : " (is dockerd running? scripts/provision.sh starts it)";
        return $"the Docker daemon at {endpoint} did not answer: {e.GetType().Name}: {e.Message}{hint}";
    }

    private static string TryGetEndpoint() => TryGetEndpointConfiguration()?.Endpoint?.ToString() ?? "(no Docker endpoint found)";

    private static DockerClient CreateClient()
    {
        var configuration = TryGetEndpointConfiguration()
            ?? throw new DockerUnavailableException(
                "Testcontainers found no Docker endpoint it can use: is dockerd running, and does DOCKER_API_VERSION match an older daemon? "
                + "(scripts/provision.sh starts dockerd and writes the variables to artifacts/testcontainers.env)",
                null);
        return configuration.GetDockerClientBuilder(Guid.Empty).Build();
    }

    private static IDockerEndpointAuthenticationConfiguration? TryGetEndpointConfiguration()
    {
        try
        {
            return TestcontainersSettings.OS?.DockerEndpointAuthConfig;
        }
        catch (Exception e) when (e is InvalidOperationException or TypeInitializationException or ArgumentException)
        {
            return null;
        }
    }
}
