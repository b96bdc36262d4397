using System.Diagnostics;
using Bus.Tests.Shared;
using Xunit;
using Xunit.Abstractions;

namespace Bus.RabbitMq.Tests;

/// <summary>A broker of its own that the outage tests freeze (docker pause) and restart.</summary>
public sealed class RabbitMqOutageFixture : RabbitMqFixture
{
}

/// <summary>
/// Behaviour across outages: a frozen broker (docker pause: the TCP connection stays up, nothing answers) and a
/// restarted one.
/// </summary>
public sealed class RabbitMqOutageTests(RabbitMqOutageFixture fixture, ITestOutputHelper output) : IClassFixture<RabbitMqOutageFixture>
{
    private static string Unique(string hint) => $"out-{hint}-{Guid.NewGuid():N}"[..24];

    private MessageBus CreateBus(TimeSpan operationTimeout, string query = "")
    {
        var url = fixture.Backend.Url.TrimEnd('/') + query;
        return MessageBus.Create(new BusOptions { Url = url, ConnectTimeout = TimeSpan.FromSeconds(5), OperationTimeout = operationTimeout }, new TimedLogs(output));
    }

    /// <summary>An endpoint from BUS_TEST_RABBITMQ_URL cannot be frozen or restarted by the tests: they fail there, saying so (never a pass or a skip).</summary>
    private void RequireLifecycleControl()
        => Assert.True(fixture.Broker.CanControlLifecycle, $"{fixture.Broker} cannot be paused or restarted by the tests");

    /// <summary>
    /// Freezes the broker, runs <paramref name="call"/>, which must fail with a <see cref="BusException"/> (within 20 s
    /// at most), and thaws the broker; returns the error and how long the call took to fail.
    /// </summary>
    private async Task<(BusException Error, TimeSpan Took)> FailWhileFrozenAsync(Func<Task> call)
    {
        await fixture.Broker.PauseAsync();
        var watch = Stopwatch.StartNew();
        try
        {
            var error = await Assert.ThrowsAnyAsync<BusException>(() => call().WaitAsync(TimeSpan.FromSeconds(20)));
            var took = watch.Elapsed;
            output.WriteLine($"failed after {took.TotalMilliseconds:0} ms: {error.Message}");
            return (error, took);
        }
        finally
        {
            await fixture.Broker.UnpauseAsync();
        }
    }

    [Fact]
    public async Task A_publish_to_a_frozen_broker_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();
        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        var topic = Unique("pub");
        await bus.EnsureTopicAsync(topic);
        await bus.PublishAsync(topic, "warm");

        var (error, took) = await FailWhileFrozenAsync(() => bus.PublishAsync(topic, "frozen").AsTask());

        Assert.True(took < TimeSpan.FromSeconds(6), $"took {took}");
        Assert.True(error.IsTransient);
        Assert.Equal("rabbitmq", error.Backend);
        Assert.Equal(topic, error.Topic);
        await Outages.PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(30));
    }

    [Fact]
    public async Task A_batch_publish_to_a_frozen_broker_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();
        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        var topic = Unique("batch");
        await bus.EnsureTopicAsync(topic);
        await bus.PublishAsync(topic, "warm");

        var (error, took) = await FailWhileFrozenAsync(() => bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("a"), OutgoingMessage.FromText("b")]).AsTask());

        Assert.True(took < TimeSpan.FromSeconds(6), $"took {took}");
        Assert.True(error.IsTransient);
        Assert.Equal(topic, error.Topic);
    }

    [Fact]
    public async Task A_batch_cut_short_by_a_freeze_says_which_messages_were_not_confirmed()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        await Outages.BatchCutShortAsync(bus, Unique("partial"), 20_000, () => fixture.Broker.PauseAsync(), () => fixture.Broker.UnpauseAsync(), output);
    }

    [Fact]
    public async Task A_publish_to_a_new_topic_on_a_frozen_broker_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();
        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        await bus.PublishAsync(Unique("warm"), "warm");
        var topic = Unique("new");

        var (error, took) = await FailWhileFrozenAsync(() => bus.PublishAsync(topic, "frozen").AsTask());

        Assert.True(took < TimeSpan.FromSeconds(6), $"took {took}");
        Assert.True(error.IsTransient);
        Assert.Equal(topic, error.Topic);
    }

    [Fact]
    public async Task Disposing_a_bus_while_the_broker_is_frozen_completes_in_bounded_time()
    {
        RequireLifecycleControl();
        var bus = CreateBus(TimeSpan.FromSeconds(3));
        var topic = Unique("dispose");
        var subscription = await bus.SubscribeAsync(topic, (m, _) => ValueTask.CompletedTask, new SubscriptionOptions { Group = "g", ShutdownTimeout = TimeSpan.FromSeconds(2) });
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("pull"));
        await bus.PublishAsync(topic, "warm");
        var held = await consumer.ReceiveAsync(new CancellationTokenSource(TimeSpan.FromSeconds(10)).Token);

        await Outages.DisposeWhileFrozenAsync(bus, () => fixture.Broker.PauseAsync(), () => fixture.Broker.UnpauseAsync(), output);
        GC.KeepAlive(subscription);
        GC.KeepAlive(held);
    }

    /// <summary>A subscription and a pull consumer live through a short freeze and a restart: everything published arrives.</summary>
    [Theory]
    [InlineData("pause")]
    [InlineData("restart")]
    public async Task Subscriptions_resume_after_an_outage_with_nothing_lost(string kind)
    {
        RequireLifecycleControl();
        await using var bus = CreateBus(TimeSpan.FromSeconds(3), "?heartbeat=2");
        await Outages.NothingLostAcrossAsync(
            bus,
            Unique("resume"),
            async _ =>
            {
                if (kind == "pause")
                {
                    await fixture.Broker.PauseAsync();
                    await Task.Delay(TimeSpan.FromSeconds(8)); // beyond two heartbeats: the client gives the connection up
                    await fixture.Broker.UnpauseAsync();
                }
                else
                {
                    await fixture.Broker.RestartAsync();
                }
            },
            publishWithin: TimeSpan.FromSeconds(45),
            output);
    }

    [Fact]
    public async Task Request_reply_works_after_a_restart()
    {
        RequireLifecycleControl();
        await using var bus = CreateBus(TimeSpan.FromSeconds(3));
        await Outages.RequestReplyAcrossAsync(bus, Unique("rpc"), () => fixture.Broker.RestartAsync(), output);
    }
}
