using Bus.Kafka.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bus.Kafka.Tests;

/// <summary>URI and settings parsing, without a broker.</summary>
public sealed class KafkaEndpointTests
{
    private const string Password = "s3cr3t-Pa55word-zq";

    private static KafkaEndpoint Parse(string url, params (string Name, string Value)[] settings)
    {
        var options = new BusOptions { Url = url };
        foreach (var (name, value) in settings)
        {
            options.Settings[name] = value;
        }

        return KafkaEndpoint.Parse(new TransportContext(new Uri(url), options, NullLoggerFactory.Instance));
    }

    [Fact]
    public void Plain_uri_gives_the_bootstrap_server_and_no_security()
    {
        var endpoint = Parse("kafka://broker-1:19092");
        Assert.Equal("broker-1:19092", endpoint.BootstrapServers);
        Assert.Empty(endpoint.Common);
        Assert.Equal(1_000_000, endpoint.MaxMessageSize);
    }

    [Fact]
    public void Port_defaults_to_9092()
        => Assert.Equal("broker:9092", Parse("kafka://broker").BootstrapServers);

    [Fact]
    public void Kafkas_scheme_means_tls()
    {
        var endpoint = Parse("kafkas://broker:9093");
        Assert.Equal("SSL", endpoint.Common["security.protocol"]);
        Assert.False(endpoint.Common.ContainsKey("sasl.username"));
    }

    [Fact]
    public void Credentials_become_sasl_settings()
    {
        var plain = Parse($"kafka://alice:{Password}@broker:9092");
        Assert.Equal("SASL_PLAINTEXT", plain.Common["security.protocol"]);
        Assert.Equal("PLAIN", plain.Common["sasl.mechanism"]);
        Assert.Equal("alice", plain.Common["sasl.username"]);
        Assert.Equal(Password, plain.Common["sasl.password"]);

        var tls = Parse($"kafkas://alice:p%40ss%3Aword@broker:9093?sasl.mechanism=SCRAM-SHA-512");
        Assert.Equal("SASL_SSL", tls.Common["security.protocol"]);
        Assert.Equal("SCRAM-SHA-512", tls.Common["sasl.mechanism"]);
        Assert.Equal("p@ss:word", tls.Common["sasl.password"]);
    }

    [Fact]
    public void Query_parameters_pass_through_as_librdkafka_properties()
    {
        var endpoint = Parse("kafka://broker:9092?security.protocol=SASL_SSL&consumer.fetch.wait.max.ms=100&producer.linger.ms=0&admin.socket.timeout.ms=7000");
        Assert.Equal("SASL_SSL", endpoint.Common["security.protocol"]);
        Assert.Equal("100", endpoint.Consumer["fetch.wait.max.ms"]);
        Assert.Equal("0", endpoint.Producer["linger.ms"]);
        Assert.Equal("7000", endpoint.Admin["socket.timeout.ms"]);
        Assert.False(endpoint.Common.ContainsKey("fetch.wait.max.ms"));
    }

    [Fact]
    public void Bootstrap_servers_setting_adds_servers_to_the_uri()
    {
        var endpoint = Parse("kafka://a:1", ("bootstrap.servers", "a:1, b:2,c:3"));
        Assert.Equal("a:1,b:2,c:3", endpoint.BootstrapServers);
    }

    [Fact]
    public void Adapter_settings_are_read_and_unknown_ones_rejected()
    {
        Assert.Equal(2_000_000, Parse("kafka://b:1?max-message-size=2000000").MaxMessageSize);
        Assert.Equal(1500, Parse("kafka://b:1", ("create-topics-timeout-ms", "1500")).CreateTopicsTimeoutMs);
        var unknown = Assert.Throws<BusConfigurationException>(() => Parse("kafka://b:1?max-mesage-size=5"));
        Assert.Contains("max-mesage-size", unknown.Message, StringComparison.Ordinal);
        Assert.Throws<BusConfigurationException>(() => Parse("kafka://b:1?max-message-size=-3"));
        Assert.Throws<BusConfigurationException>(() => Parse("kafka://b:1?consumer.group.id=x"));
    }

    [Fact]
    public void Scheme_resolves_to_the_kafka_backend_with_its_limits()
    {
        var bus = MessageBus.Create($"kafka://alice:{Password}@127.0.0.1:1?max-message-size=2000000");
        Assert.Equal("kafka", bus.Backend);
        Assert.Equal(2_000_000, bus.Capabilities.MaxMessageSize);
        Assert.DoesNotContain(Password, bus.RedactedUrl, StringComparison.Ordinal);
        Assert.Equal("kafka", MessageBus.Create("kafkas://broker:9093").Backend);
    }

    [Fact]
    public void Bad_settings_fail_at_create_without_the_password()
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create($"kafka://alice:{Password}@broker:9092?no-such-setting=1"));
        Assert.DoesNotContain(Password, error.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Positions_round_trip()
    {
        Assert.Equal("3:1234", KafkaMessages.Position(3, 1234));
        var parsed = KafkaMessages.ParsePositions("3:1234, 0:7");
        Assert.NotNull(parsed);
        Assert.Equal(1234, parsed[3]);
        Assert.Equal(7, parsed[0]);
        Assert.Null(KafkaMessages.ParsePositions("1234"));
        Assert.Null(KafkaMessages.ParsePositions("a:b"));
    }

    [Fact]
    public void Declared_capabilities_explain_every_missing_feature()
    {
        var capabilities = KafkaTransportFactory.DeclaredCapabilities;
        foreach (var flag in Enum.GetValues<BusFeatures>().Where(f => f != BusFeatures.None && !capabilities.Supports(f)))
        {
            Assert.True(capabilities.Remarks.ContainsKey(flag), $"no remark for {flag}");
        }

        Assert.Equal(245, capabilities.MaxTopicNameLength);
    }
}
