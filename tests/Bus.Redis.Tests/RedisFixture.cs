using System.Net;
using System.Net.Sockets;
using Bus.Conformance;
using Bus.Conformance.Brokers;
using Bus.Conformance.Xunit;

namespace Bus.Redis.Tests;

/// <summary>
/// A Redis server for one test class, chosen by Bus.Conformance.Brokers: the endpoint in BUS_TEST_REDIS_URL if set,
/// else the official redis:7 image if present (or BUS_TEST_IMAGES=official), else the local image
/// local/redis:bookworm built by scripts/provision.sh. If none of them can start, every case fails with the reason
/// and the broker's log tail (never skipped).
/// </summary>
public class RedisFixture : ConformanceFixture
{
    public const string Password = "s3cr3t-Pa55word-zq";

    private BrokerFixture? _broker;

    /// <summary>The broker (to restart it in integration tests).</summary>
    public BrokerFixture Broker => _broker ?? throw new InvalidOperationException("Redis did not start.");

    /// <summary>The broker's URI (for the raw client in integration tests).</summary>
    public Uri ConnectionUri => _broker?.ConnectionUri ?? throw new InvalidOperationException($"Redis did not start: {Backend.Target}");

    protected override async Task<ConformanceBackend> StartAsync()
    {
        _broker = await BrokerFixtures.CreateAsync(BrokerKind.Redis);
        try
        {
            await _broker.StartAsync();
        }
        catch (BrokerUnavailableException ex)
        {
            throw new InvalidOperationException($"Redis did not start ({_broker}): {ex.Message}\n{ex.LogTail}", ex);
        }

        return new ConformanceBackend
        {
            Name = "redis",
            Target = _broker.Target,
            Url = _broker.ConnectionUri.ToString(),
            UnreachableUrl = $"redis://bus:{Password}@127.0.0.1:{ClosedPort()}",
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
    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        return port;
    }
}
