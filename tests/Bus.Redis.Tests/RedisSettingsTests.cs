using Bus.Redis.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using StackExchange.Redis;
using Xunit;

namespace Bus.Redis.Tests;

/// <summary>URI and settings parsing: no broker needed.</summary>
public sealed class RedisSettingsTests
{
    private static RedisSettings Parse(string url, Action<BusOptions>? configure = null)
    {
        var options = new BusOptions { Url = url };
        configure?.Invoke(options);
        return RedisSettings.Parse(new TransportContext(new Uri(url), options, NullLoggerFactory.Instance));
    }

    [Fact]
    public void Plain_uri_has_defaults()
    {
        var settings = Parse("redis://cache.example:6380");
        Assert.False(settings.Tls);
        Assert.False(settings.Configuration.Ssl);
        Assert.Equal(0, settings.Database);
        Assert.Equal(RedisSettings.DefaultMaxMessageSize, settings.MaxMessageSize);
        Assert.Null(settings.TrimMaxLength);
        Assert.Null(settings.TrimMaxAge);
        Assert.Empty(settings.TrimArguments());
        var endpoint = Assert.Single(settings.Configuration.EndPoints);
        Assert.Equal("Unspecified/cache.example:6380", endpoint.ToString());
    }

    [Fact]
    public void Default_port_is_6379()
    {
        var settings = Parse("redis://cache.example");
        Assert.Equal("Unspecified/cache.example:6379", Assert.Single(settings.Configuration.EndPoints).ToString());
    }

    [Fact]
    public void Rediss_means_tls_with_the_host_as_server_name()
    {
        var settings = Parse("rediss://secure.example:6380/2");
        Assert.True(settings.Tls);
        Assert.True(settings.Configuration.Ssl);
        Assert.Equal("secure.example", settings.Configuration.SslHost);
        Assert.Equal(2, settings.Database);
        Assert.Equal(2, settings.Configuration.DefaultDatabase);
    }

    [Fact]
    public void User_and_password_come_from_the_uri_decoded()
    {
        var settings = Parse("redis://app%2Fuser:p%40ss%3Aword@h:6379/5");
        Assert.Equal("app/user", settings.Configuration.User);
        Assert.Equal("p@ss:word", settings.Configuration.Password);
        Assert.Equal(5, settings.Database);
        Assert.DoesNotContain("p@ss:word", settings.Configuration.ToString(includePassword: false), StringComparison.Ordinal);
    }

    [Fact]
    public void Password_without_user_is_the_requirepass_form()
    {
        // redis://:secret@h (empty user) is the other common spelling, but core's UriRedaction cannot rebuild such a
        // URI (UriBuilder throws) before the factory sees it; redis://default:secret@h is the ACL equivalent.
        var withoutColon = Parse("redis://secret@h");
        Assert.Null(withoutColon.Configuration.User);
        Assert.Equal("secret", withoutColon.Configuration.Password);
        var defaultUser = Parse("redis://default:secret@h");
        Assert.Equal("default", defaultUser.Configuration.User);
        Assert.Equal("secret", defaultUser.Configuration.Password);
    }

    [Theory]
    [InlineData("redis://h/abc")]
    [InlineData("redis://h/1/2")]
    [InlineData("redis://h/-1")]
    public void Path_must_be_a_database_number(string url)
    {
        var error = Assert.Throws<BusConfigurationException>(() => Parse(url));
        Assert.Contains("database", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("redis://h?tls-ca=/any/ca.pem", "needs TLS")]
    [InlineData("rediss://h?tls-ca=/no/such/ca.pem", "not a file")]
    public void A_tls_ca_needs_tls_and_a_file(string url, string expected)
    {
        var error = Assert.Throws<BusConfigurationException>(() => Parse(url));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Trimming_by_length_from_the_query()
    {
        var settings = Parse("redis://h?trim-maxlen=1000");
        Assert.Equal(1000, settings.TrimMaxLength);
        Assert.Equal(["MAXLEN", "~", "1000"], settings.TrimArguments().Select(a => ((RedisValue)a).ToString()));
        var exact = Parse("redis://h?trim-maxlen=10&trim-exact=true");
        Assert.Equal(["MAXLEN", "=", "10"], exact.TrimArguments().Select(a => ((RedisValue)a).ToString()));
    }

    [Fact]
    public void Trimming_by_age_from_settings()
    {
        var settings = Parse("redis://h", o => o.Settings["trim-max-age"] = "7d");
        Assert.Equal(TimeSpan.FromDays(7), settings.TrimMaxAge);
        var arguments = settings.TrimArguments().Select(a => ((RedisValue)a).ToString()).ToList();
        Assert.Equal("MINID", arguments[0]);
        Assert.Equal("~", arguments[1]);
        var cutOff = long.Parse(arguments[2][..^2], System.Globalization.CultureInfo.InvariantCulture);
        var expected = DateTimeOffset.UtcNow.AddDays(-7).ToUnixTimeMilliseconds();
        Assert.InRange(cutOff, expected - 5000, expected + 5000);
        Assert.EndsWith("-0", arguments[2], StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("redis://h?trim-maxlen=0")]
    [InlineData("redis://h?trim-maxlen=x")]
    [InlineData("redis://h?trim-maxlen=5&trim-max-age=1h")]
    [InlineData("redis://h?trim-max-age=soon")]
    [InlineData("redis://h?max-message-size=0")]
    [InlineData("redis://h?max-message-size=536870913")]
    [InlineData("redis://h?trim-exact=maybe")]
    public void Bad_settings_are_configuration_errors_naming_the_setting(string url)
    {
        var error = Assert.Throws<BusConfigurationException>(() => Parse(url));
        Assert.StartsWith("redis:", error.Message, StringComparison.Ordinal);
        Assert.Contains("'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Max_message_size_setting_changes_the_declared_limit()
    {
        var options = new BusOptions { Url = "redis://h?max-message-size=1024" };
        var transport = new RedisTransportFactory().Create(new TransportContext(new Uri(options.Url), options, NullLoggerFactory.Instance));
        Assert.Equal(1024, transport.Capabilities.MaxMessageSize);
        Assert.Equal(RedisSettings.DefaultMaxMessageSize, RedisTransportFactory.DeclaredCapabilities.MaxMessageSize);
    }

    [Fact]
    public void Both_schemes_resolve_to_this_factory()
    {
        Assert.IsType<RedisTransportFactory>(BusTransports.Find("redis"));
        Assert.IsType<RedisTransportFactory>(BusTransports.Find("rediss"));
    }

    [Theory]
    [InlineData("orders", null)]
    [InlineData("app:orders.v2_x-y", null)]
    [InlineData("bad topic", "\\u0020")]
    [InlineData("a/b", "/")]
    [InlineData("ü", "ü")]
    public void Stream_names(string topic, string? offending)
    {
        var why = RedisTransportFactory.ValidateStreamName(topic);
        if (offending is null)
        {
            Assert.Null(why);
        }
        else
        {
            Assert.Contains(offending, why, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("1700000000000-5", "1700000000000-4")]
    [InlineData("1700000000000-0", "1699999999999-18446744073709551615")]
    [InlineData("0-0", "0")]
    public void Start_at_a_position_is_inclusive(string position, string groupStart)
        => Assert.Equal(groupStart, StreamIds.GroupStart(StartPosition.At(position)));

    [Fact]
    public void Start_positions_map_onto_group_ids()
    {
        Assert.Equal("$", StreamIds.GroupStart(StartPosition.Latest));
        Assert.Equal("0", StreamIds.GroupStart(StartPosition.Earliest));
        Assert.Equal("1699999999999-18446744073709551615", StreamIds.GroupStart(StartPosition.AtTime(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000))));
        Assert.Throws<BusConfigurationException>(() => StreamIds.GroupStart(StartPosition.At("not-an-id")));
    }

    [Fact]
    public void A_misspelt_setting_fails_at_creation_and_the_message_lists_what_redis_reads()
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("redis://:pw-secret@127.0.0.1:1?trim-maxlenn=5"));
        Assert.Contains("'trim-maxlenn'", error.Message, StringComparison.Ordinal);
        Assert.Contains("trim-maxlen", error.Message.Split("It reads:")[1], StringComparison.Ordinal);
        Assert.DoesNotContain("pw-secret", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_failed_connect_does_not_pass_on_advice_for_a_setting_the_adapter_does_not_take()
    {
        const string Client = "It was not possible to connect to the redis server(s). Error connecting right now. To allow this multiplexer to continue retrying until it's able to connect, use abortConnect=false in your connection string or AbortOnConnectFail=false; in your code.";
        Assert.Equal("It was not possible to connect to the redis server(s). Error connecting right now.", RedisTransport.WithoutClientAdvice(Client));
        Assert.Equal("No connection is available", RedisTransport.WithoutClientAdvice("No connection is available"));
        Assert.Equal("It was not possible to connect to the redis server(s). Error connecting right now. ConnectTimeout", RedisTransport.WithoutClientAdvice(Client.Replace("in your code.", "in your code. ConnectTimeout", StringComparison.Ordinal)));
    }

    /// <summary>Every setting the adapter documents is read while the bus is created, whatever the scheme: one that is not fails as unknown.</summary>
    [Theory]
    [InlineData("redis://127.0.0.1:1?client-name=bus-test&tls-host=cache&max-message-size=1024&trim-maxlen=100&trim-exact=true&poll-max-delay=20&claim-interval=200&delay-check-interval=1s")]
    [InlineData("rediss://127.0.0.1:1?tls-host=cache&trim-max-age=7d")]
    public async Task Every_documented_setting_is_accepted(string url)
    {
        await using var bus = MessageBus.Create(url);
        Assert.Equal("redis", bus.Backend);
    }
}
