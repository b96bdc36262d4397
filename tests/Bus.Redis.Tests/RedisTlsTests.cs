using Bus.Conformance.Brokers;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Redis.Tests;

/// <summary>
/// <c>rediss://</c> against a Redis that speaks only TLS, with a certificate from a private CA made by the test: the
/// server is trusted through the <c>tls-ca</c> setting, and not without it or under another host name.
/// </summary>
public sealed class RedisTlsTests(RedisTlsTests.TlsRedis redis, ITestOutputHelper output) : IClassFixture<RedisTlsTests.TlsRedis>
{
    [Fact]
    public async Task A_server_with_a_certificate_from_the_ca_named_in_tls_ca_carries_messages()
    {
        await using var bus = MessageBus.Create(new BusOptions { Url = $"rediss://127.0.0.1:{redis.Port}?tls-ca={Uri.EscapeDataString(redis.CaFile)}" });
        var topic = $"tls-{Guid.NewGuid():N}";
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g", StartPosition = StartPosition.Earliest });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("over tls", "k"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var message = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal("over tls", System.Text.Encoding.UTF8.GetString(message.Body.Span));
        Assert.Equal("k", message.Key);
        await message.AckAsync();
    }

    [Theory]
    [InlineData(false, null)]                 // the private CA is trusted by nobody else
    [InlineData(true, "elsewhere.example")]   // trusted CA, but the certificate does not name this host
    public async Task A_server_the_client_cannot_verify_is_refused_as_a_connection_failure(bool trustCa, string? tlsHost)
    {
        var query = string.Join('&', new[]
        {
            trustCa ? $"tls-ca={Uri.EscapeDataString(redis.CaFile)}" : null,
            tlsHost is null ? null : $"tls-host={tlsHost}",
        }.Where(part => part is not null));
        await using var bus = MessageBus.Create(new BusOptions
        {
            Url = $"rediss://127.0.0.1:{redis.Port}" + (query.Length > 0 ? "?" + query : ""),
            // A refused handshake is answered at once, not when the connect timeout runs out (see the Redis
            // credentials test): a timeout the test cannot wait out shows it.
            ConnectTimeout = TimeSpan.FromMinutes(10),
        });
        var failure = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync("refused", OutgoingMessage.FromText("never")).AsTask().WaitAsync(TimeSpan.FromSeconds(30)));
        output.WriteLine(failure.ToString());
        Assert.Equal(BusFailureReason.Connection, failure.Reason);
        Assert.False(failure.IsTransient); // a certificate that is not accepted stays so: retrying is no use
        Assert.Contains("certificate", failure.Message, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>One TLS-only Redis for the class.</summary>
    public sealed class TlsRedis : IAsyncLifetime
    {
        private TlsBrokerContainer? _broker;

        public string CaFile => Broker.CaFile;

        public int Port => Broker.Port;

        private TlsBrokerContainer Broker => _broker ?? throw new InvalidOperationException("Redis with TLS did not start");

        public async Task InitializeAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            _broker = await TlsBrokerContainer.StartAsync(
                BrokerKind.Redis,
                TestCertificates.Create(),
                6379,
                "Ready to accept connections",
                ["redis-server", "--port", "0", "--tls-port", "6379", "--tls-cert-file", "/tls/server.pem", "--tls-key-file", "/tls/server.key",
                    "--tls-ca-cert-file", "/tls/ca.pem", "--tls-auth-clients", "no", "--bind", "0.0.0.0", "--protected-mode", "no",
                    "--save", "", "--appendonly", "no"],
                cancellationToken: timeout.Token);
        }

        public async Task DisposeAsync() => await (_broker?.DisposeAsync() ?? default);
    }
}
