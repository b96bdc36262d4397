using System.Diagnostics;
using Bus.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Sqs.Tests;

/// <summary>A fauxqs of its own that the outage tests freeze (SIGSTOP), so other classes are not disturbed.</summary>
public sealed class SqsOutageFixture : IAsyncLifetime
{
    public FauxqsServer Server { get; private set; } = null!;

    public async Task InitializeAsync() => Server = await FauxqsServer.StartAsync();

    public async Task DisposeAsync() => await Server.DisposeAsync();
}

/// <summary>
/// Behaviour against a frozen emulator (its process stopped: connections stay up and new ones are accepted by the
/// kernel, nothing is answered), as RabbitMqOutageTests checks for RabbitMQ.
/// </summary>
public sealed class SqsOutageTests(SqsOutageFixture fixture, ITestOutputHelper output) : IClassFixture<SqsOutageFixture>
{
    private static string Name(string hint) => $"out-{hint}-{Guid.NewGuid():N}"[..24];

    /// <summary>A bus on this class's emulator whose long polls wait <paramref name="waitSeconds"/>.</summary>
    private MessageBus CreateBus(TimeSpan operationTimeout, int waitSeconds = 1)
        => MessageBus.Create(new BusOptions { Url = fixture.Server.Url().Replace("wait-seconds=1", $"wait-seconds={waitSeconds}", StringComparison.Ordinal), ConnectTimeout = TimeSpan.FromSeconds(5), OperationTimeout = operationTimeout }, new TimedLogs(output));

    [Fact]
    public async Task A_publish_to_a_frozen_emulator_fails_within_the_operation_timeout()
    {
        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        var topic = Name("pub");
        await using (await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g")))
        {
            // The group queue exists from here on; the consumer is closed again so that only the publish meets the freeze.
        }

        await bus.PublishAsync(topic, "warm");

        await fixture.Server.PauseAsync();
        BusException? error;
        var watch = Stopwatch.StartNew();
        try
        {
            error = await Assert.ThrowsAnyAsync<BusException>(async () => await bus.PublishAsync(topic, "frozen").AsTask().WaitAsync(TimeSpan.FromSeconds(20)));
        }
        finally
        {
            output.WriteLine($"publish failed after {watch.ElapsedMilliseconds} ms");
            await fixture.Server.ResumeAsync();
        }

        output.WriteLine(error.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(6), $"took {watch.Elapsed}");
        Assert.True(error.IsTransient);
        Assert.Equal("sqs", error.Backend);
        Assert.Equal(topic, error.Topic);

        // Thawed, the same bus publishes again.
        await bus.PublishAsync(topic, "after").AsTask().WaitAsync(TimeSpan.FromSeconds(20));
    }

    /// <summary>
    /// Receives are long polls that disposing lets finish, and the SDK waits 30 s per attempt (4 attempts) for a server
    /// that does not answer: this disposal took more than 150 s; now the poll's own wait plus the operation timeout,
    /// then briefly per step.
    /// </summary>
    [Fact]
    public async Task A_batch_cut_short_by_a_freeze_says_which_messages_were_not_confirmed()
    {
        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        await Outages.BatchCutShortAsync(bus, Name("partial"), 5_000, fixture.Server.PauseAsync, fixture.Server.ResumeAsync, output);
    }

    [Fact]
    public async Task Disposing_a_bus_while_the_emulator_is_frozen_completes_in_bounded_time()
    {
        // wait-seconds=5 (the adapter's default): receives are long polls in flight whenever the emulator freezes.
        var bus = CreateBus(TimeSpan.FromSeconds(3), waitSeconds: 5);
        var topic = Name("dispose");
        var subscription = await bus.SubscribeAsync(topic, (_, _) => ValueTask.CompletedTask, new SubscriptionOptions { Group = "g", ShutdownTimeout = TimeSpan.FromSeconds(2) });
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("pull"));
        await bus.PublishAsync(topic, "warm");
        using (var wait = new CancellationTokenSource(TimeSpan.FromSeconds(15)))
        {
            var held = await consumer.ReceiveAsync(wait.Token); // held, never settled: disposing releases it
            Assert.Equal("warm", held.GetText());
        }

        await Outages.DisposeWhileFrozenAsync(bus, fixture.Server.PauseAsync, fixture.Server.ResumeAsync, output);
        GC.KeepAlive(subscription);

        // The emulator serves a new bus, and the held message was not lost: group "pull" gets it (once its visibility
        // timeout has run out, when disposing could not release it).
        await using var after = CreateBus(TimeSpan.FromSeconds(10));
        await using var again = await after.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "pull", AckTimeout = TimeSpan.FromSeconds(5) });
        using var receive = new CancellationTokenSource(TimeSpan.FromSeconds(45));
        var watchAgain = Stopwatch.StartNew();
        var message = await again.ReceiveAsync(receive.Token);
        output.WriteLine($"after thawing, group pull received '{message.GetText()}' after {watchAgain.ElapsedMilliseconds} ms");
        Assert.Equal("warm", message.GetText());
        await message.AckAsync();
    }
}
