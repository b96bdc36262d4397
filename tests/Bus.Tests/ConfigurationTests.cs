using Bus.Transport;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Xunit;

namespace Bus.Tests;

public class ConfigurationTests
{
    [Fact]
    public async Task AddBus_binds_the_section_and_builds_the_backend_it_names()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Bus:Url"] = "memory://config-test",
            ["Bus:ConnectTimeout"] = "00:00:03",
            ["Bus:Settings:retention"] = "10",
        }).Build();
        await using var provider = new ServiceCollection().AddBus(configuration.GetSection("Bus")).BuildServiceProvider();

        var options = provider.GetRequiredService<IOptions<BusOptions>>().Value;
        Assert.Equal(TimeSpan.FromSeconds(3), options.ConnectTimeout);
        Assert.Equal("10", options.Settings["retention"]);
        var bus = provider.GetRequiredService<IMessageBus>();
        await bus.ConnectAsync(); // on the interface, so that a DI user can fail at startup
        Assert.Equal("memory", bus.Backend);
        Assert.Same(bus, provider.GetRequiredService<IMessageBus>());
    }

    [Fact]
    public void Calling_AddBus_twice_registers_one_bus()
    {
        var services = new ServiceCollection().AddBus(o => o.Url = "memory://").AddBus(o => o.ConnectTimeout = TimeSpan.FromSeconds(1));
        Assert.Single(services, d => d.ServiceType == typeof(IMessageBus));
        using var provider = services.BuildServiceProvider();
        Assert.Equal(TimeSpan.FromSeconds(1), provider.GetRequiredService<IOptions<BusOptions>>().Value.ConnectTimeout);
    }

    [Fact]
    public void Options_validation_names_the_unknown_scheme_and_never_the_password()
    {
        using var provider = new ServiceCollection().AddBus(o => o.Url = "carrier-pigeon://user:hunter2-secret@loft:1").BuildServiceProvider();
        var error = Assert.Throws<OptionsValidationException>(() => provider.GetRequiredService<IOptions<BusOptions>>().Value);
        Assert.Contains("carrier-pigeon", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2-secret", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("memory://?retension=10", "'retension'")]
    [InlineData("memory://?bogus=1&pasword=hunter2-secret", "'bogus', 'pasword'")]
    public void A_setting_the_backend_does_not_read_fails_at_creation_by_name_without_its_value(string url, string names)
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create(url));
        Assert.Contains(names, error.Message, StringComparison.Ordinal);
        Assert.Contains("It reads: max-message-size, retention.", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2-secret", error.Message, StringComparison.Ordinal);
        Assert.Equal("memory", error.Backend);
    }

    [Fact]
    public void Pieces_of_a_secret_split_off_by_an_unescaped_ampersand_are_counted_not_named()
    {
        // The password is "hun&ter2-secret&x=y", not percent-encoded: its tail reads as two settings of their own.
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("memory://?retension=1&password=hun&ter2-secret&x=y"));
        Assert.Contains("'password', 'retension'", error.Message, StringComparison.Ordinal);
        Assert.Contains("2 settings that follow a secret in the URI's query are not used and not named here", error.Message, StringComparison.Ordinal);
        Assert.Contains("%26", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("ter2", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("'x'", error.Message, StringComparison.Ordinal);

        var alone = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("memory://?retention=5&token=abc&def"));
        Assert.StartsWith("memory: setting 'token' (from", alone.Message, StringComparison.Ordinal);
        Assert.Contains("1 setting that follows a secret", alone.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("def", alone.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_transport_that_names_a_piece_of_a_secret_in_its_own_error_is_scrubbed()
    {
        // Like Kafka, which checks its settings itself: "unknown setting 'k-9Q'" for password=Xy7&k-9Q.
        BusTransports.Register(new DelegatingFactory("test-names-settings", _ => throw new BusConfigurationException("test: unknown setting 'k-9Q'; the password is 'Xy7'", "test")));

        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("test-names-settings://?sasl.password=Xy7&k-9Q"));

        Assert.Equal("test: unknown setting '***'; the password is '***'", error.Message);
        Assert.Equal("test", error.Backend);
    }

    [Fact]
    public async Task A_setting_from_configuration_is_checked_like_one_from_the_uri()
    {
        var options = new BusOptions { Url = "memory://" };
        options.Settings["queue-type"] = "classic"; // meant for RabbitMQ
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create(options));
        Assert.Contains("'queue-type'", error.Message, StringComparison.Ordinal);

        options.Settings.Clear();
        options.Settings["Retention"] = "10"; // names are case-insensitive
        await using var bus = MessageBus.Create(options);
        Assert.Equal("memory", bus.Backend);
    }

    [Fact]
    public async Task Invalid_subscription_options_name_the_backend_and_the_topic()
    {
        await using var bus = MessageBus.Create("memory://");
        var error = await Assert.ThrowsAsync<BusConfigurationException>(async () => await bus.CreateConsumerAsync("orders", new SubscriptionOptions { Group = "g", MaxInFlight = 0 }));
        Assert.StartsWith("memory: subscription to topic 'orders': SubscriptionOptions.MaxInFlight must be between 1 and 65535", error.Message, StringComparison.Ordinal);
        Assert.Equal(("memory", "orders"), (error.Backend, error.Topic));

        var standalone = Assert.Throws<BusConfigurationException>(() => new SubscriptionOptions { Group = "g", MaxDeliveries = 0 }.Validate());
        Assert.StartsWith("SubscriptionOptions.MaxDeliveries", standalone.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "is empty")]
    [InlineData("localhost:5672", "no scheme")]
    [InlineData("rabbitmq://guest:p@ss%word@", "not a valid URI")]
    public void A_bad_url_fails_at_creation_naming_the_part_that_is_wrong(string url, string expected)
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create(url));
        Assert.Contains(expected, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("ss%word", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_url_may_list_several_hosts_and_the_parsed_uri_keeps_the_first()
    {
        var uri = Bus.Internal.BusUri.Parse("kafka://user:pw@h1:9092,h2:9093,h3:9094/?acks=all");
        Assert.Equal("h1", uri.Host);
        Assert.Equal(9092, uri.Port);
        Assert.Equal("?acks=all", uri.Query);
        Assert.Equal("pw", Bus.Internal.BusUri.PasswordOf("kafka://user:pw@h1:9092,h2:9093"));
        Assert.Equal("memory", BusTransports.FindForUrl("memory://a,b")!.Backend);
    }

    [Fact]
    public void A_known_scheme_without_its_adapter_says_which_package_to_reference()
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("pulsar://localhost:6650"));
        Assert.Contains("Bus.Pulsar", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, nameof(SubscriptionOptions.MaxInFlight))]
    [InlineData(70_000, nameof(SubscriptionOptions.MaxInFlight))]
    public void Subscription_options_name_the_setting_that_is_out_of_range(int maxInFlight, string setting)
    {
        var options = new SubscriptionOptions { Group = "g", MaxInFlight = maxInFlight };
        var error = Assert.Throws<BusConfigurationException>(options.Validate);
        Assert.Contains(setting, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Subscription_options_require_a_group_and_are_copied_when_used()
    {
        Assert.Contains(nameof(SubscriptionOptions.Group), Assert.Throws<BusConfigurationException>(new SubscriptionOptions().Validate).Message, StringComparison.Ordinal);
        var options = SubscriptionOptions.ForGroup("g");
        var copy = options.Clone();
        options.MaxInFlight = 1;
        Assert.Equal(16, copy.MaxInFlight);
    }

    [Fact]
    public void Settings_come_from_options_and_the_query_string_wins()
    {
        var options = new BusOptions { Url = "memory://x?retention=5&max-message-size=1024" };
        options.Settings["retention"] = "7";
        options.Settings["other"] = "kept";
        var context = new TransportContext(new Uri(options.Url), options, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        Assert.Equal("5", context.GetSetting("retention"));
        Assert.Equal("kept", context.GetSetting("other"));
        Assert.Equal(1024, context.GetSetting("max-message-size", 0));
        Assert.Throws<BusConfigurationException>(() => new TransportContext(new Uri("memory://x?retention=lots"), new BusOptions(), Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance).GetSetting("retention", 1));
    }
}
