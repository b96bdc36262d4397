using Bus.RabbitMq.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bus.RabbitMq.Tests;

/// <summary>URI and settings parsing: no broker needed.</summary>
public sealed class RabbitMqEndpointTests
{
    private static RabbitMqEndpoint Parse(string url, Action<BusOptions>? configure = null)
    {
        var options = new BusOptions { Url = url };
        configure?.Invoke(options);
        return RabbitMqEndpoint.Parse(new TransportContext(new Uri(url), options, NullLoggerFactory.Instance));
    }

    [Theory]
    [InlineData("amqp://host", "/")]
    [InlineData("amqp://host:5672", "/")]
    [InlineData("amqp://host:5672/", "/")]
    [InlineData("amqp://host:5672/%2f", "/")]
    [InlineData("amqp://host:5672/%2F", "/")]
    [InlineData("amqp://host/orders", "orders")]
    [InlineData("amqp://host/team%2forders", "team/orders")]
    [InlineData("rabbitmq://host/v%20h", "v h")]
    public void Vhost_comes_from_the_path(string url, string vhost)
        => Assert.Equal(vhost, Parse(url).VirtualHost);

    [Fact]
    public void Amqp_defaults()
    {
        var endpoint = Parse("amqp://localhost");
        Assert.Equal("localhost", endpoint.Host);
        Assert.Equal(5672, endpoint.Port);
        Assert.False(endpoint.Tls);
        Assert.Null(endpoint.UserName);
        Assert.Equal(RabbitMqQueueType.Quorum, endpoint.QueueType);
        Assert.Equal(RabbitMqTransportFactory.DefaultMaxMessageSize, endpoint.MaxMessageSize);
    }

    [Fact]
    public void Amqps_uses_tls_on_5671_with_decoded_credentials()
    {
        var endpoint = Parse("amqps://app%40corp:p%40ss%3Aw%2Frd@broker.example.com/prod");
        Assert.True(endpoint.Tls);
        Assert.Equal(5671, endpoint.Port);
        Assert.Equal("app@corp", endpoint.UserName);
        Assert.Equal("p@ss:w/rd", endpoint.Password);
        Assert.Equal("prod", endpoint.VirtualHost);
        var factory = endpoint.CreateConnectionFactory(TimeSpan.FromSeconds(3), "test");
        Assert.True(factory.Ssl.Enabled);
        Assert.Equal("broker.example.com", factory.Ssl.ServerName);
        Assert.Equal("p@ss:w/rd", factory.Password);
        Assert.DoesNotContain("p@ss", endpoint.ToString(), StringComparison.Ordinal);
        Assert.DoesNotContain("p%40ss", endpoint.RedactedUrl, StringComparison.Ordinal);
    }

    [Fact]
    public void Rabbitmq_scheme_with_tls_setting_and_explicit_port()
    {
        var endpoint = Parse("rabbitmq://u:p@host:15671?tls=true&tls-verify=false");
        Assert.True(endpoint.Tls);
        Assert.False(endpoint.TlsVerify);
        Assert.Equal(15671, endpoint.Port);
    }

    [Theory]
    [InlineData("amqp://host?tls-ca=/any/ca.pem", "needs TLS")]
    [InlineData("amqps://host?tls-ca=/no/such/ca.pem", "could not be read")]
    public void A_tls_ca_needs_tls_and_a_file(string url, string expected)
    {
        var error = Assert.Throws<BusConfigurationException>(() => Parse(url));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_tls_ca_file_must_hold_a_pem_certificate()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllText(path, "not a certificate");
            var error = Assert.Throws<BusConfigurationException>(() => Parse($"amqps://host?tls-ca={Uri.EscapeDataString(path)}"));
            Assert.Contains("holds no PEM certificate", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Theory]
    [InlineData("amqp://host", 1800)]
    [InlineData("amqp://host?reply-queue-expiry=2", 2)]
    public void Reply_queue_expiry_is_in_seconds(string url, int seconds)
        => Assert.Equal(TimeSpan.FromSeconds(seconds), Parse(url).ReplyQueueExpiry);

    [Fact]
    public void Reply_queue_expiry_must_be_positive()
        => Assert.Contains("reply-queue-expiry", Assert.Throws<BusConfigurationException>(() => Parse("amqp://host?reply-queue-expiry=0")).Message, StringComparison.Ordinal);

    [Fact]
    public void Tls_host_names_the_certificate_to_expect()
    {
        var endpoint = Parse("amqps://10.0.0.5?tls-host=rabbit.internal");
        Assert.Equal("rabbit.internal", endpoint.TlsServerName);
        Assert.Equal("rabbit.internal", endpoint.CreateConnectionFactory(TimeSpan.FromSeconds(1), "test").Ssl.ServerName);
    }

    [Fact]
    public void Settings_come_from_the_query_and_the_options()
    {
        var endpoint = Parse("amqp://host?queue-type=classic&delivery-limit=7", o => o.Settings["max-message-size"] = "1048576");
        Assert.Equal(RabbitMqQueueType.Classic, endpoint.QueueType);
        Assert.Equal(7, endpoint.DeliveryLimit);
        Assert.Equal(1_048_576, endpoint.MaxMessageSize);
    }

    [Theory]
    [InlineData("amqp://host?queue-type=lazy")]
    [InlineData("amqp://host?max-message-size=0")]
    [InlineData("amqp://host?max-message-size=999999999")]
    [InlineData("amqp://host?delivery-limit=0")]
    [InlineData("amqp://host?single-active-consumer=maybe")]
    [InlineData("amqp://host/a/b")]
    public void Invalid_settings_are_configuration_errors(string url)
    {
        var error = Assert.Throws<BusConfigurationException>(() => Parse(url));
        Assert.Contains("rabbitmq", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Stream_queues_are_refused_with_the_reason()
    {
        var error = Assert.Throws<BusException>(() => Parse("amqp://host?queue-type=stream"));
        Assert.Equal(BusFailureReason.NotSupported, error.Reason);
        Assert.Contains("stream", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("rabbitmq")]
    [InlineData("amqp")]
    [InlineData("amqps")]
    public void Schemes_resolve_by_referencing_the_assembly(string scheme)
        => Assert.IsType<RabbitMqTransportFactory>(BusTransports.Find(scheme));

    [Fact]
    public void Max_message_size_setting_is_the_declared_limit()
    {
        var options = new BusOptions { Url = "amqp://host?max-message-size=2048" };
        var transport = new RabbitMqTransportFactory().Create(new TransportContext(new Uri(options.Url), options, NullLoggerFactory.Instance));
        Assert.Equal(2048, transport.Capabilities.MaxMessageSize);
        Assert.Null(transport.ValidateTopicName("orders.v1-eu_west"));
        Assert.NotNull(transport.ValidateTopicName("amq.orders"));
        Assert.NotNull(transport.ValidateTopicName("a:b"));
    }

    [Fact]
    public void Every_missing_or_emulated_feature_has_a_remark()
    {
        var capabilities = RabbitMqTransportFactory.DeclaredCapabilities;
        foreach (var flag in Enum.GetValues<BusFeatures>().Where(f => f != BusFeatures.None && !capabilities.Supports(f)))
        {
            Assert.True(capabilities.Remarks.ContainsKey(flag), $"{flag} is not declared and has no remark");
        }

        Assert.True(capabilities.Remarks.ContainsKey(BusFeatures.DelayedDelivery));
        Assert.True(capabilities.Remarks.ContainsKey(BusFeatures.DelayedNack));
    }

    [Fact]
    public void A_misspelt_setting_fails_at_creation_and_the_message_lists_what_rabbitmq_reads()
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("amqp://guest:pw-secret@host?queue_type=classic"));
        Assert.Contains("'queue_type'", error.Message, StringComparison.Ordinal);
        Assert.Contains("queue-type", error.Message.Split("It reads:")[1], StringComparison.Ordinal);
        Assert.DoesNotContain("pw-secret", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Every setting the adapter documents is read while the bus is created, whatever the scheme: one that is not fails as unknown.</summary>
    [Theory]
    [InlineData("amqp://guest:guest@host?tls=true&tls-verify=false&tls-host=broker&queue-type=classic&delivery-limit=5&heartbeat=30&max-message-size=1048576&reply-queue-expiry=60&single-active-consumer=true")]
    [InlineData("amqps://guest:guest@host?tls=true")]
    public async Task Every_documented_setting_is_accepted(string url)
    {
        await using var bus = MessageBus.Create(url);
        Assert.Equal("rabbitmq", bus.Backend);
    }
}
