using Bus.Conformance.Brokers;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

/// <summary>These tests change process-wide environment variables, so their collection runs alone, after the others.</summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class SelectionCollection
{
    public const string Name = "selection";
}

/// <summary>How fixtures are chosen: configuration only, and never by pulling or waiting on a registry.</summary>
[Collection(SelectionCollection.Name)]
public sealed class SelectionTests(ITestOutputHelper output)
{
    [Fact]
    public void Expected_backends_default_to_everything_but_pulsar()
    {
        var expected = BrokerExpectations.Parse(BrokerExpectations.DefaultExpected);
        Assert.Equal(Enum.GetValues<BrokerKind>().Where(k => k != BrokerKind.Pulsar), expected.Order());
    }

    [Fact]
    public void Expected_backends_reject_unknown_names()
    {
        Assert.Equal(Enum.GetValues<BrokerKind>(), BrokerExpectations.Parse(" all ").Order());
        Assert.Empty(BrokerExpectations.Parse("none"));
        Assert.Equal([BrokerKind.Mqtt, BrokerKind.Sqs], BrokerExpectations.Parse("sqs, MQTT").Order());
        var error = Assert.Throws<InvalidOperationException>(() => BrokerExpectations.Parse("rabbitmq,rabbit"));
        Assert.Contains("'rabbit'", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Every_kind_has_a_backend()
    {
        Assert.Equal(Enum.GetValues<BrokerKind>(), BrokerFixtures.Backends.Select(b => b.Kind));
        Assert.Equal("BUS_TEST_RABBITMQ_URL", BrokerFixtures.GetBackend(BrokerKind.RabbitMq).UrlVariable);
        Assert.Equal("BUS_TEST_MQTT_URL", BrokerFixtures.GetBackend(BrokerKind.Mqtt).UrlVariable);
    }

    [Fact]
    public async Task A_url_variable_selects_that_endpoint_and_nothing_else() =>
        await WithEnvironmentAsync("BUS_TEST_PULSAR_URL", "http://127.0.0.1:9/", async () =>
        {
            await using var fixture = await BrokerFixtures.CreateAsync(BrokerKind.Pulsar);
            Assert.Equal(new Uri("http://127.0.0.1:9/"), fixture.ConnectionUri);
            Assert.StartsWith("endpoint from BUS_TEST_PULSAR_URL", fixture.Target, StringComparison.Ordinal);
            Assert.False(fixture.CanControlLifecycle);
            await Assert.ThrowsAsync<NotSupportedException>(() => fixture.StopAsync());
        });

    [Fact]
    public async Task A_missing_image_is_reported_without_pulling()
    {
        // No official Pulsar image here and no local one anywhere: the reason names what was looked for.
        await WithEnvironmentAsync("BUS_TEST_PULSAR_IMAGE", "bus-test/no-such-image:0", async () =>
        {
            var error = await Assert.ThrowsAsync<BrokerUnavailableException>(() => BrokerFixtures.CreateAsync(BrokerKind.Pulsar));
            Assert.Contains("bus-test/no-such-image:0 is not present", error.Reason, StringComparison.Ordinal);
            Assert.Contains("BUS_TEST_PULSAR_URL", error.Reason, StringComparison.Ordinal);
        });
    }

    [Fact]
    public async Task An_unexpected_broker_that_cannot_start_is_not_run_rather_than_failed()
    {
        await WithEnvironmentAsync("BUS_TEST_PULSAR_IMAGE", "bus-test/no-such-image:0", async () =>
            await WithEnvironmentAsync(BrokerExpectations.Variable, "redis", async () =>
            {
                await using var availability = await BrokerAvailability.StartAsync(BrokerKind.Pulsar);
                Assert.False(availability.IsRunning);
                Assert.False(availability.TryGetFixture(out _, out var reason));
                Assert.StartsWith("Pulsar: not run here: ", reason, StringComparison.Ordinal);
            }));
    }

    [Fact]
    public async Task An_expected_broker_that_cannot_start_fails()
    {
        await WithEnvironmentAsync("BUS_TEST_PULSAR_IMAGE", "bus-test/no-such-image:0", async () =>
            await WithEnvironmentAsync(BrokerExpectations.Variable, "pulsar", async () =>
            {
                await using var availability = await BrokerAvailability.StartAsync(BrokerKind.Pulsar);
                var error = Assert.Throws<BrokerUnavailableException>(() => availability.TryGetFixture(out _, out _));
                Assert.Contains("expected on this machine", error.Message, StringComparison.Ordinal);
            }));
    }

    [Fact]
    public async Task An_invalid_image_mode_is_an_error_not_a_guess() =>
        await WithEnvironmentAsync(BrokerFixtures.ImageModeVariable, "sometimes", async () =>
        {
            var error = await Assert.ThrowsAsync<BrokerUnavailableException>(() => BrokerFixtures.CreateAsync(BrokerKind.Redis));
            Assert.Contains("BUS_TEST_IMAGES=sometimes", error.Reason, StringComparison.Ordinal);
        });

    [Fact]
    public async Task A_broker_that_dies_on_start_fails_with_its_log_tail_and_leaves_no_container()
    {
        // The Pulsar recipe run on the bare Debian base: its command cannot exist there, so the container exits at once.
        await WithEnvironmentAsync(BrokerFixtures.ImageModeVariable, "official", async () =>
            await WithEnvironmentAsync("BUS_TEST_PULSAR_IMAGE", "local/debian:bookworm", async () =>
            {
                await using var fixture = await BrokerFixtures.CreateAsync(BrokerKind.Pulsar);
                var error = await Assert.ThrowsAsync<BrokerUnavailableException>(() => fixture.StartAsync());
                output.WriteLine(error.Message);
                Assert.Contains("exit code 127", error.Reason, StringComparison.Ordinal);
                Assert.Contains("apply-config-from-env.py", error.LogTail, StringComparison.Ordinal);
                Assert.Contains("--- broker log tail ---", error.Message, StringComparison.Ordinal);
            }));

        var left = await CommandLine.RunAsync(
            "docker", ["ps", "-aq", "--filter", $"label=bus.conformance.pid={Environment.ProcessId}", "--filter", "label=bus.conformance.kind=Pulsar"], RepositoryPaths.Root);
        Assert.Equal(0, left.ExitCode);
        Assert.Equal(string.Empty, left.Output.Trim());
    }

    private static async Task WithEnvironmentAsync(string name, string value, Func<Task> action)
    {
        var before = Environment.GetEnvironmentVariable(name);
        Environment.SetEnvironmentVariable(name, value);
        try
        {
            await action();
        }
        finally
        {
            Environment.SetEnvironmentVariable(name, before);
        }
    }
}
