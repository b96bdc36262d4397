using Xunit;

namespace Bus.Kafka.Tests;

/// <summary>
/// A cluster for the integration tests, chosen like the conformance fixture's (<see cref="KafkaTestCluster"/>).
/// Fails (not skips) when it cannot start.
/// </summary>
public sealed class KafkaClusterFixture : IAsyncLifetime
{
    private KafkaTestCluster? _cluster;

    /// <summary>All bootstrap servers, for raw clients.</summary>
    public string BootstrapServers { get; private set; } = "";

    /// <summary>Options for a bus on this cluster.</summary>
    public BusOptions CreateOptions()
    {
        var options = new BusOptions { Url = "kafka://" + BootstrapServers.Split(',')[0] };
        foreach (var (name, value) in KafkaFixture.TestSettings())
        {
            options.Settings[name] = value;
        }

        options.Settings["bootstrap.servers"] = BootstrapServers;
        return options;
    }

    public async Task InitializeAsync()
    {
        _cluster = await KafkaTestCluster.StartAsync();
        BootstrapServers = _cluster.BootstrapServers;
    }

    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }
}
