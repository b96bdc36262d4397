using System.Net;
using System.Net.Sockets;
using Bus.Conformance;
using Bus.Conformance.Brokers;
using Bus.Conformance.Xunit;

namespace Bus.RabbitMq.Tests;

/// <summary>
/// A RabbitMQ broker for one test class, chosen by Bus.Conformance.Brokers: the endpoint in BUS_TEST_RABBITMQ_URL if
/// set, else the official rabbitmq:3.13 image if present (or BUS_TEST_IMAGES=official), else the local image
/// local/rabbitmq:bookworm (Debian's RabbitMQ 3.10.8) built by scripts/provision.sh. If none can start, every case
/// fails with the reason and the broker's log tail (never skipped).
/// </summary>
public class RabbitMqFixture : ConformanceFixture
{
    public const string Password = "s3cr3t-Pa55word-zq";

    private BrokerFixture? _broker;

    /// <summary>The started broker (for raw-client checks and lifecycle control).</summary>
    public BrokerFixture Broker => _broker ?? throw new InvalidOperationException($"RabbitMQ did not start: {Backend.Target}");

    /// <summary>The broker's URI (credentials included).</summary>
    public Uri ConnectionUri => Broker.ConnectionUri;

    /// <summary>The matrix row's name.</summary>
    protected virtual string RowName => "rabbitmq";

    /// <summary>Settings added to the bus's URI as its query (none: the adapter's defaults).</summary>
    protected virtual string Query => "";

    protected override async Task<ConformanceBackend> StartAsync()
    {
        _broker = await BrokerFixtures.CreateAsync(BrokerKind.RabbitMq);
        try
        {
            await _broker.StartAsync();
        }
        catch (BrokerUnavailableException ex)
        {
            throw new InvalidOperationException($"RabbitMQ did not start ({_broker}): {ex.Message}\n{ex.LogTail}", ex);
        }

        return new ConformanceBackend
        {
            Name = RowName,
            Target = _broker.Target,
            Url = new UriBuilder(_broker.ConnectionUri) { Query = Query }.Uri.ToString(),
            UnreachableUrl = $"amqp://guest:{Password}@127.0.0.1:{ClosedPort()}/%2f",
            // Quorum queues with per-key gating move 2,000 ordered messages at a few hundred per second when test.sh
            // runs four projects at once on two cores; 10 s was seen to be too short once (1,237 of 2,000).
            TimeoutScale = 2,
        };
    }

    protected override async Task StopAsync()
    {
        if (_broker is not null)
        {
            await _broker.DisposeAsync();
        }
    }

    /// <summary>A port that nothing listens on: bound, then released.</summary>
    internal static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}

/// <summary>
/// A broker for the catalogue with classic group queues (queue-type=classic): the row shows what changes when an
/// application picks them over the default quorum queues.
/// </summary>
public sealed class RabbitMqClassicFixture : RabbitMqFixture
{
    protected override string RowName => "rabbitmq-classic";

    protected override string Query => "queue-type=classic";
}

/// <summary>A second broker for the integration tests (one of them restarts it).</summary>
public sealed class RabbitMqIntegrationFixture : RabbitMqFixture
{
}
