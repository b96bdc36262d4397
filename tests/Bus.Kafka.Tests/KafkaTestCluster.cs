namespace Bus.Kafka.Tests;

/// <summary>
/// Where the Kafka tests run, chosen by configuration: <c>BUS_TEST_KAFKA_URL</c> (a real broker); otherwise the
/// librdkafka mock cluster, in the container <c>local/kafka-mock:bookworm</c> when Docker and that image are there
/// (<c>BUS_TEST_KAFKA_MOCK=container</c> insists on it), else as a native kcat process
/// (<c>BUS_TEST_KAFKA_MOCK=process</c> insists on that).
/// </summary>
public sealed class KafkaTestCluster : IAsyncDisposable
{
    private readonly IAsyncDisposable? _owner;

    private KafkaTestCluster(string bootstrapServers, string target, IAsyncDisposable? owner)
    {
        BootstrapServers = bootstrapServers;
        Target = target;
        _owner = owner;
    }

    /// <summary>All bootstrap servers.</summary>
    public string BootstrapServers { get; }

    /// <summary>What the tests run against, truthfully.</summary>
    public string Target { get; }

    /// <summary>Whether this is librdkafka's mock cluster (started by the tests), not a broker named by BUS_TEST_KAFKA_URL.</summary>
    public bool IsMock => _owner is not null;

    /// <summary>The bus URI: one server (System.Uri holds one host); the rest go in the <c>bootstrap.servers</c> setting.</summary>
    public string Url => "kafka://" + BootstrapServers.Split(',')[0];

    /// <summary>
    /// Starts the cluster the configuration names. <paramref name="ownMock"/>: a mock cluster of the test's own, even
    /// when BUS_TEST_KAFKA_URL names a broker (for tests that freeze it with <see cref="PauseAsync"/>).
    /// </summary>
    public static async Task<KafkaTestCluster> StartAsync(bool ownMock = false)
    {
        var url = Environment.GetEnvironmentVariable("BUS_TEST_KAFKA_URL");
        if (!ownMock && !string.IsNullOrWhiteSpace(url))
        {
            var uri = new Uri(url.Trim());
            return new KafkaTestCluster($"{uri.Host}:{(uri.Port > 0 ? uri.Port : 9092)}", $"endpoint from BUS_TEST_KAFKA_URL ({uri.Host}:{uri.Port})", null);
        }

        var mode = Environment.GetEnvironmentVariable("BUS_TEST_KAFKA_MOCK")?.Trim().ToLowerInvariant() ?? "auto";
        string? fallbackReason = null;
        if (mode is "auto" or "" or "container")
        {
            try
            {
                var container = await KafkaMockContainer.StartAsync(TimeSpan.FromSeconds(30));
                return new KafkaTestCluster(container.BootstrapServers, $"container {KafkaMockContainer.Image} (librdkafka mock cluster, 3 brokers, {container.Version}); not a Kafka broker", container);
            }
            catch (KafkaMockContainer.ContainerUnavailableException ex) when (mode != "container")
            {
                fallbackReason = ex.Message;
            }
        }
        else if (mode != "process")
        {
            throw new InvalidOperationException($"BUS_TEST_KAFKA_MOCK={mode} is not one of auto, container, process.");
        }

        var process = await KafkaMockCluster.StartAsync(TimeSpan.FromSeconds(20));
        var target = $"native process: librdkafka mock cluster, 3 brokers ({process.Version}); not a Kafka broker";
        return new KafkaTestCluster(process.BootstrapServers, fallbackReason is null ? target : $"{target} [container unavailable: {fallbackReason}]", process);
    }

    /// <summary>Freezes the mock cluster: connections stay open, no request is answered. Not for a broker named by URL.</summary>
    public Task PauseAsync() => _owner switch
    {
        KafkaMockContainer container => container.PauseAsync(),
        KafkaMockCluster process => process.PauseAsync(),
        _ => throw new NotSupportedException("a broker named by BUS_TEST_KAFKA_URL cannot be paused by the tests"),
    };

    /// <summary>Thaws what <see cref="PauseAsync"/> froze.</summary>
    public Task ResumeAsync() => _owner switch
    {
        KafkaMockContainer container => container.ResumeAsync(),
        KafkaMockCluster process => process.ResumeAsync(),
        _ => throw new NotSupportedException("a broker named by BUS_TEST_KAFKA_URL cannot be paused by the tests"),
    };

    public ValueTask DisposeAsync() => _owner?.DisposeAsync() ?? default;
}
