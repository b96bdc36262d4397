using Bus.Conformance.Brokers;
using Xunit;
using Xunit.Abstractions;

namespace Bus.RabbitMq.Tests;

/// <summary>
/// <c>amqps://</c> against a RabbitMQ that listens with TLS only, with a certificate from a private CA made by the
/// test: the broker is trusted through the <c>tls-ca</c> setting, and not without it or under another host name.
/// </summary>
public sealed class RabbitMqTlsTests(RabbitMqTlsTests.TlsRabbitMq rabbit, ITestOutputHelper output) : IClassFixture<RabbitMqTlsTests.TlsRabbitMq>
{
    private string Url(string? query) => $"amqps://guest:guest@127.0.0.1:{rabbit.Port}/%2f" + (string.IsNullOrEmpty(query) ? "" : "?" + query);

    [Fact]
    public async Task A_broker_with_a_certificate_from_the_ca_named_in_tls_ca_carries_messages()
    {
        await using var bus = MessageBus.Create(new BusOptions { Url = Url($"tls-ca={Uri.EscapeDataString(rabbit.CaFile)}") });
        var topic = $"tls-{Guid.NewGuid():N}";
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "g" });
        await bus.PublishAsync(topic, OutgoingMessage.FromText("over tls", "k"));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        var message = await consumer.ReceiveAsync(timeout.Token);
        Assert.Equal("over tls", System.Text.Encoding.UTF8.GetString(message.Body.Span));
        Assert.Equal("k", message.Key);
        await message.AckAsync();
    }

    [Theory]
    [InlineData(false, null)]               // the private CA is trusted by nobody else
    [InlineData(true, "elsewhere.example")] // trusted CA, but the certificate does not name this host
    public async Task A_broker_the_client_cannot_verify_is_refused_as_a_connection_failure(bool trustCa, string? tlsHost)
    {
        var query = string.Join('&', new[]
        {
            trustCa ? $"tls-ca={Uri.EscapeDataString(rabbit.CaFile)}" : null,
            tlsHost is null ? null : $"tls-host={tlsHost}",
        }.Where(part => part is not null));
        await using var bus = MessageBus.Create(new BusOptions { Url = Url(query), ConnectTimeout = TimeSpan.FromSeconds(5) });
        var failure = await Assert.ThrowsAsync<BusException>(async () => await bus.PublishAsync("refused", OutgoingMessage.FromText("never")));
        output.WriteLine(failure.ToString());
        Assert.Equal(BusFailureReason.Connection, failure.Reason);
        Assert.False(failure.IsTransient); // a certificate that is not accepted stays so: retrying is no use
        Assert.DoesNotContain("guest:guest", failure.ToString(), StringComparison.Ordinal);
    }

    /// <summary>One TLS-only RabbitMQ for the class, and its CA's certificate in a file.</summary>
    public sealed class TlsRabbitMq : IAsyncLifetime
    {
        private const string Configuration = """
            loopback_users = none
            listeners.tcp = none
            listeners.ssl.default = 5671
            ssl_options.cacertfile = /tls/ca.pem
            ssl_options.certfile = /tls/server.pem
            ssl_options.keyfile = /tls/server.key
            ssl_options.verify = verify_none
            ssl_options.fail_if_no_peer_cert = false
            """;

        private TlsBrokerContainer? _broker;

        public string CaFile => Broker.CaFile;

        public int Port => Broker.Port;

        private TlsBrokerContainer Broker => _broker ?? throw new InvalidOperationException("RabbitMQ with TLS did not start");

        public async Task InitializeAsync()
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
            _broker = await TlsBrokerContainer.StartAsync(
                BrokerKind.RabbitMq,
                TestCertificates.Create(),
                5671,
                "Server startup complete",
                files: new Dictionary<string, string> { ["/etc/rabbitmq/rabbitmq.conf"] = Configuration },
                cancellationToken: timeout.Token);
        }

        public async Task DisposeAsync() => await (_broker?.DisposeAsync() ?? default);
    }
}
