using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

[CollectionDefinition(Name)]
public sealed class ComposeCollection
{
    public const string Name = "compose";
}

/// <summary>
/// docker-compose.yml (official images) and docker-compose.local.yml (local images) are valid, and the local
/// combination brings up exactly rabbitmq, redis, nats and mosquitto, healthy, on 127.0.0.1. Runs under its own
/// project name and on its own host ports, so it never meets the fixtures' containers or a developer's compose stack.
/// </summary>
[Collection(ComposeCollection.Name)]
public sealed class ComposeTests(ITestOutputHelper output)
{
    private static readonly string[] LocalServices = ["mosquitto", "nats", "rabbitmq", "redis"];

    [Fact]
    public async Task Both_files_are_valid()
    {
        var official = await ComposeAsync(Environment(), ["-f", "docker-compose.yml", "config", "-q"]);
        Assert.True(official.ExitCode == 0, official.ToString());
        var local = await ComposeAsync(Environment(), ["-f", "docker-compose.yml", "-f", "docker-compose.local.yml", "config", "-q"]);
        Assert.True(local.ExitCode == 0, local.ToString());
    }

    [Fact]
    public async Task Local_override_brings_up_four_healthy_brokers_on_loopback()
    {
        var ports = new Dictionary<string, string>
        {
            ["BUS_COMPOSE_RABBITMQ_PORT"] = FreePort(),
            ["BUS_COMPOSE_REDIS_PORT"] = FreePort(),
            ["BUS_COMPOSE_NATS_PORT"] = FreePort(),
            ["BUS_COMPOSE_NATS_MONITORING_PORT"] = FreePort(),
            ["BUS_COMPOSE_MQTT_PORT"] = FreePort(),
        };
        var environment = Environment(ports);
        await RemoveProjectsOfDeadTestRunsAsync();
        string[] files = ["-p", $"{ProjectPrefix}{System.Environment.ProcessId}", "-f", "docker-compose.yml", "-f", "docker-compose.local.yml"];
        try
        {
            var up = await ComposeAsync(environment, [.. files, "up", "-d"], TimeSpan.FromMinutes(3));
            Assert.True(up.ExitCode == 0, up.ToString());

            var ids = (await ComposeAsync(environment, [.. files, "ps", "-q"])).Output
                .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            Assert.Equal(LocalServices.Length, ids.Length);

            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(120);
            JsonElement[] containers;
            while (true)
            {
                containers = await InspectAsync(ids);
                var health = containers.Select(c => $"{Service(c)}={c.GetProperty("State").GetProperty("Health").GetProperty("Status").GetString()}").ToArray();
                if (health.All(h => h.EndsWith("=healthy", StringComparison.Ordinal)))
                {
                    output.WriteLine(string.Join(", ", health));
                    break;
                }

                Assert.True(DateTime.UtcNow < deadline, $"not healthy within 120 s: {string.Join(", ", health)}");
                await Task.Delay(1000);
            }

            Assert.Equal(LocalServices, containers.Select(Service).Order(StringComparer.Ordinal));
            foreach (var container in containers)
            {
                Assert.StartsWith("local/", container.GetProperty("Config").GetProperty("Image").GetString());
                foreach (var binding in container.GetProperty("NetworkSettings").GetProperty("Ports").EnumerateObject()
                    .Where(p => p.Value.ValueKind == JsonValueKind.Array)
                    .SelectMany(p => p.Value.EnumerateArray()))
                {
                    Assert.Equal("127.0.0.1", binding.GetProperty("HostIp").GetString());
                }
            }

            foreach (var port in ports.Values)
            {
                using var client = new TcpClient();
                await client.ConnectAsync(IPAddress.Loopback, int.Parse(port, System.Globalization.CultureInfo.InvariantCulture));
            }
        }
        finally
        {
            var down = await ComposeAsync(environment, [.. files, "down", "-v", "--remove-orphans"], TimeSpan.FromMinutes(2));
            output.WriteLine(down.ToString());
        }
    }

    private const string ProjectPrefix = "bus-compose-test-";

    /// <summary>A test run killed before its `down` leaves containers, a network and volumes: remove them.</summary>
    private async Task RemoveProjectsOfDeadTestRunsAsync()
    {
        var projects = new HashSet<string>(StringComparer.Ordinal);
        foreach (var kind in new[] { "container", "network", "volume" })
        {
            string[] list = kind == "container"
                ? ["ps", "-a", "--filter", "label=com.docker.compose.project", "--format", "{{.Label \"com.docker.compose.project\"}}"]
                : [kind, "ls", "--filter", "label=com.docker.compose.project", "--format", "{{.Label \"com.docker.compose.project\"}}"];
            var result = await CommandLine.RunAsync("docker", list, RepositoryPaths.Root);
            projects.UnionWith(result.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
        }

        foreach (var project in projects.Where(p => p.StartsWith(ProjectPrefix, StringComparison.Ordinal)))
        {
            if (int.TryParse(project[ProjectPrefix.Length..], System.Globalization.CultureInfo.InvariantCulture, out var pid) && !IsAlive(pid))
            {
                var down = await ComposeAsync(Environment(), ["-p", project, "-f", "docker-compose.yml", "-f", "docker-compose.local.yml", "down", "-v", "--remove-orphans"]);
                output.WriteLine($"removed leftover compose project {project}: exit {down.ExitCode}");
            }
        }
    }

    private static bool IsAlive(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    private static string Service(JsonElement container) =>
        container.GetProperty("Config").GetProperty("Labels").GetProperty("com.docker.compose.service").GetString()!;

    private static async Task<JsonElement[]> InspectAsync(string[] ids)
    {
        var inspect = await CommandLine.RunAsync("docker", ["inspect", .. ids], RepositoryPaths.Root);
        Assert.True(inspect.ExitCode == 0, inspect.ToString());
        return [.. JsonDocument.Parse(inspect.Output).RootElement.EnumerateArray().Select(e => e.Clone())];
    }

    private static Task<CommandLine.Result> ComposeAsync(IReadOnlyDictionary<string, string> environment, string[] arguments, TimeSpan? timeout = null) =>
        CommandLine.RunAsync("docker-compose", arguments, RepositoryPaths.Root, environment, timeout);

    // Added to the inherited environment (which carries DOCKER_API_VERSION where it is needed).
    private static Dictionary<string, string> Environment(Dictionary<string, string>? ports = null) => new(ports ?? []);

    private static string FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }
}
