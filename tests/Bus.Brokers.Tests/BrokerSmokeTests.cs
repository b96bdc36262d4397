using Bus.Conformance.Brokers;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

/// <summary>
/// What every broker fixture must do, written once: the broker round-trips a message with its own client, and comes
/// back on the same URI after a stop/start and after a pause/unpause. Each broker is a small sealed leaf that supplies
/// the round trip. A broker expected on this machine that did not start fails every test here, with its log tail.
/// </summary>
public abstract class BrokerSmokeTests(BrokerCollectionFixture broker, ITestOutputHelper output)
{
    protected static readonly TimeSpan ClientTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Sends one message with the broker's own client and receives and settles it again.</summary>
    protected abstract Task RoundTripAsync(BrokerFixture fixture, string payload, CancellationToken cancellationToken);

    [Fact]
    public async Task Round_trips_a_message()
    {
        var fixture = GetBroker();

        using var timeout = new CancellationTokenSource(ClientTimeout);
        await RoundTripAsync(fixture, $"hello {Guid.NewGuid():N}", timeout.Token);
    }

    [Fact]
    public async Task Comes_back_on_the_same_uri_after_stop_and_start()
    {
        var fixture = GetControllableBroker();

        var before = fixture.ConnectionUri;
        await fixture.StopAsync();
        try
        {
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                await RoundTripAsync(fixture, "while stopped", timeout.Token);
            });
        }
        finally
        {
            await fixture.StartAgainAsync();
        }

        Assert.Equal(before, fixture.ConnectionUri);
        using var again = new CancellationTokenSource(ClientTimeout);
        await RoundTripAsync(fixture, "after restart", again.Token);
        output.WriteLine($"{fixture} came back on {fixture.ConnectionUri}");
    }

    [Fact]
    public async Task Answers_again_on_the_same_uri_after_pause_and_unpause()
    {
        var fixture = GetControllableBroker();

        var before = fixture.ConnectionUri;
        await fixture.PauseAsync();
        try
        {
            // Frozen: the port is still open (Docker holds it) but the broker does not answer.
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(2));
                await RoundTripAsync(fixture, "while paused", timeout.Token);
            });
        }
        finally
        {
            await fixture.UnpauseAsync();
        }

        Assert.Equal(before, fixture.ConnectionUri);
        using var again = new CancellationTokenSource(ClientTimeout);
        await RoundTripAsync(fixture, "after unpause", again.Token);
    }

    [Fact]
    public async Task Log_tail_is_readable()
    {
        var fixture = GetBroker();

        var tail = await fixture.GetLogTailAsync(10);
        Assert.False(string.IsNullOrWhiteSpace(tail));
        output.WriteLine(tail);
    }

    /// <summary>The broker, if it can be stopped and paused by the tests; else the test fails, saying why.</summary>
    private BrokerFixture GetControllableBroker()
    {
        var fixture = GetBroker();
        Assert.True(fixture.CanControlLifecycle, $"{fixture.Kind}: not run here: {fixture.Target} cannot be stopped or paused by the tests");
        return fixture;
    }

    /// <summary>
    /// The broker. Fails the test with the reason (and the log tail, when the broker was expected here and did not
    /// start) when there is none: a broker that cannot run is a failure, never a pass or a skip.
    /// </summary>
    private BrokerFixture GetBroker()
    {
        if (broker.Availability.TryGetFixture(out var fixture, out var notRunReason))
        {
            output.WriteLine(fixture.ToString());
            return fixture;
        }

        throw new Xunit.Sdk.XunitException(notRunReason);
    }
}
