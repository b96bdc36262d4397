using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Bus.Conformance;
using Bus.Conformance.Xunit;
using Xunit;

namespace Bus.Kafka.Tests;

/// <summary>
/// Kafka for the conformance suite (see <see cref="KafkaTestCluster"/>): <c>BUS_TEST_KAFKA_URL</c> (a real broker) when
/// set, otherwise librdkafka's mock cluster, in a container or as a native kcat process (no Kafka broker can run on
/// these machines).
/// </summary>
public sealed class KafkaFixture : ConformanceFixture
{
    private KafkaTestCluster? _cluster;

    /// <summary>What Kafka does and librdkafka's mock cluster cannot show.</summary>
    public static IReadOnlyDictionary<BusFeatures, string> NotVerifiableOnTheMock { get; } = new Dictionary<BusFeatures, string>
    {
        [BusFeatures.ReplayFromTime] = "the librdkafka mock cluster does not answer OffsetsForTimes",
    };

    /// <summary>Whether the conformance run will use the mock cluster (no BUS_TEST_KAFKA_URL), as the theory data must know before the fixture starts.</summary>
    public static bool UsesTheMock => string.IsNullOrWhiteSpace(Environment.GetEnvironmentVariable("BUS_TEST_KAFKA_URL"));

    /// <summary>Short sessions so rebalances after a consumer dies are quick.</summary>
    public static Dictionary<string, string> TestSettings() => new()
    {
        ["consumer.session.timeout.ms"] = "6000",
        ["consumer.heartbeat.interval.ms"] = "1000",
        ["create-topics-timeout-ms"] = "2000",
    };

    protected override async Task<ConformanceBackend> StartAsync()
    {
        _cluster = await KafkaTestCluster.StartAsync();
        var settings = TestSettings();
        settings["bootstrap.servers"] = _cluster.BootstrapServers;
        return new ConformanceBackend
        {
            Name = "kafka",
            Target = _cluster.Target,
            Url = _cluster.Url,
            Settings = settings,
            UnreachableUrl = string.Create(CultureInfo.InvariantCulture, $"kafka://bus:s3cr3t-Pa55word-zq@127.0.0.1:{ClosedPort()}"),
            TimeoutScale = 2,
            LoggerFactory = new WarningFileLoggerFactory(WarningLogPath()),
            NotVerifiable = _cluster.IsMock ? NotVerifiableOnTheMock : new Dictionary<BusFeatures, string>(),
        };
    }

    /// <summary><c>artifacts/conformance/kafka-warnings.log</c>, started afresh for each run.</summary>
    private static string WarningLogPath()
    {
        Directory.CreateDirectory(MatrixWriter.DefaultDirectory);
        var path = Path.Combine(MatrixWriter.DefaultDirectory, "kafka-warnings.log");
        File.WriteAllText(path, "");
        return path;
    }

    protected override async Task StopAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>The whole catalogue against Kafka (here: the librdkafka mock cluster).</summary>
public sealed class KafkaConformance(KafkaFixture fixture) : ConformanceTests(fixture), IClassFixture<KafkaFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(KafkaTransportFactory.DeclaredCapabilities, KafkaFixture.UsesTheMock ? KafkaFixture.NotVerifiableOnTheMock : null);
}
