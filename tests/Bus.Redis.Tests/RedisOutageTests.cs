using System.Diagnostics;
using Bus.Tests.Shared;
using StackExchange.Redis;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Redis.Tests;

/// <summary>A server of its own that the outage tests freeze (docker pause) and restart.</summary>
public sealed class RedisOutageFixture : RedisFixture
{
}

/// <summary>
/// Behaviour across outages: a frozen server (docker pause: the TCP connection stays up, nothing answers) and a
/// restarted one.
/// </summary>
public sealed class RedisOutageTests(RedisOutageFixture fixture, ITestOutputHelper output) : IClassFixture<RedisOutageFixture>
{
    private static readonly TimeSpan OperationTimeout = TimeSpan.FromSeconds(3);

    private static string Unique(string hint) => $"out-{hint}-{Guid.NewGuid():N}"[..24];

    private MessageBus CreateBus(string query = "")
    {
        var url = $"redis://{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port}{query}";
        return MessageBus.Create(new BusOptions { Url = url, ConnectTimeout = TimeSpan.FromSeconds(5), OperationTimeout = OperationTimeout }, new TimedLogs(output, "Bus.Redis.Client"));
    }

    /// <summary>An endpoint from BUS_TEST_REDIS_URL cannot be frozen or restarted by the tests: they fail there, saying so (never a pass or a skip).</summary>
    private void RequireLifecycleControl()
        => Assert.True(fixture.Broker.CanControlLifecycle, $"{fixture.Broker} cannot be paused or restarted by the tests");

    /// <summary>Runs <paramref name="publish"/> against the frozen server; returns its failure and how long it took.</summary>
    private async Task<(BusException Error, TimeSpan Took)> FailWhileFrozenAsync(string what, Func<Task> publish)
    {
        await fixture.Broker.PauseAsync();
        BusException error;
        var watch = Stopwatch.StartNew();
        try
        {
            error = await Assert.ThrowsAnyAsync<BusException>(async () => await publish().WaitAsync(TimeSpan.FromSeconds(20)));
        }
        finally
        {
            output.WriteLine($"{what} failed after {watch.ElapsedMilliseconds} ms");
            await fixture.Broker.UnpauseAsync();
        }

        output.WriteLine(error.Message);
        return (error, watch.Elapsed);
    }

    private static void AssertTimelyTransientFailure(BusException error, TimeSpan took, string topic)
    {
        Assert.True(took < TimeSpan.FromSeconds(6), $"took {took}");
        Assert.True(error.IsTransient, error.ToString());
        Assert.Equal("redis", error.Backend);
        Assert.Equal(topic, error.Topic);
    }

    [Fact]
    public async Task A_publish_to_a_frozen_server_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        var topic = Unique("pub");
        await bus.EnsureTopicAsync(topic);
        await bus.PublishAsync(topic, "warm");

        var (error, took) = await FailWhileFrozenAsync("publish", async () => await bus.PublishAsync(topic, "frozen"));

        AssertTimelyTransientFailure(error, took, topic);
        await Outages.PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task A_batch_publish_to_a_frozen_server_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        var topic = Unique("batch");
        await bus.EnsureTopicAsync(topic);
        await bus.PublishAsync(topic, "warm");

        var (error, took) = await FailWhileFrozenAsync("batch", async () => await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("a"), OutgoingMessage.FromText("b")]));

        AssertTimelyTransientFailure(error, took, topic);
        await Outages.PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(20));
        await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("c"), OutgoingMessage.FromText("d")]);
    }

    /// <summary>
    /// The server stops taking writes (CLIENT PAUSE … WRITE from another connection: XADDs wait unanswered, as on a
    /// frozen server) when the adapter is about to send the 5,001st of 10,000 messages, once a consumer has received
    /// the first: the first half is partly confirmed, the second half not at all. A pause from outside the call (docker
    /// pause, or CLIENT PAUSE once the stream had grown) often landed after Redis had taken the whole batch, more so on
    /// a loaded machine.
    /// </summary>
    [Fact]
    public async Task A_batch_cut_short_by_a_server_that_stops_writing_says_which_messages_were_not_confirmed()
    {
        await using var bus = CreateBus();
        await using var admin = await ConnectionMultiplexer.ConnectAsync($"{fixture.ConnectionUri.Host}:{fixture.ConnectionUri.Port},allowAdmin=true");
        var server = admin.GetDatabase();
        var topic = Unique("partial");
        await Outages.BatchCutShortAsync(
            bus,
            topic,
            10_000,
            async () =>
            {
                await server.ExecuteAsync("CLIENT", "PAUSE", "60000", "WRITE");
                output.WriteLine($"paused writes with {await server.StreamLengthAsync(topic)} entries stored");
            },
            () => server.ExecuteAsync("CLIENT", "UNPAUSE"),
            output,
            freezeFromInside: true,
            ackTimeout: TimeSpan.FromSeconds(5));
    }

    [Fact]
    public async Task A_publish_to_a_new_topic_on_a_frozen_server_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        await bus.PublishAsync(Unique("warm"), "warm");
        var topic = Unique("new");

        var (error, took) = await FailWhileFrozenAsync("publish to a new topic", async () => await bus.PublishAsync(topic, "frozen"));

        AssertTimelyTransientFailure(error, took, topic);
        await Outages.PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task Disposing_a_bus_while_the_server_is_frozen_completes_in_bounded_time()
    {
        RequireLifecycleControl();

        var bus = CreateBus();
        var topic = Unique("dispose");
        var subscription = await bus.SubscribeAsync(topic, (m, _) => ValueTask.CompletedTask, new SubscriptionOptions { Group = "g", ShutdownTimeout = TimeSpan.FromSeconds(2) });
        await using var consumer = await bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("pull"));
        await bus.PublishAsync(topic, "warm");
        using var receiving = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        var held = await consumer.ReceiveAsync(receiving.Token);

        await Outages.DisposeWhileFrozenAsync(bus, () => fixture.Broker.PauseAsync(), () => fixture.Broker.UnpauseAsync(), output);
        Assert.Equal("warm", held.GetText());
        GC.KeepAlive(subscription);
    }

    /// <summary>
    /// A subscription and a pull consumer live through a freeze longer than the client needs to give its connection
    /// up, and through a restart: everything published arrives.
    /// </summary>
    [Theory]
    [InlineData("pause")]
    [InlineData("restart")]
    public async Task Subscriptions_resume_after_an_outage_with_nothing_lost(string kind)
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        await Outages.NothingLostAcrossAsync(
            bus,
            Unique("resume"),
            async waitForAll =>
            {
                if (kind == "pause")
                {
                    await fixture.Broker.PauseAsync();
                    // The consumers poll all the time, so the client's keep-alive (60 s, a PING after that long without
                    // traffic) never comes into play; what gives the connection up is StackExchange.Redis's dead-socket
                    // check (no reads for 4 x the operation timeout while commands time out: about 13 s here, seen in
                    // the client's log as "Dead socket detected"). The freeze outlasts it, so the client reconnects.
                    await Task.Delay(TimeSpan.FromSeconds(18));
                    await fixture.Broker.UnpauseAsync();
                }
                else
                {
                    // Entries that only the server's memory holds are lost with a restart unless it saves them (the
                    // images snapshot on shutdown by default): those published before are required to arrive first,
                    // so that the check does not depend on the server's persistence.
                    await waitForAll(TimeSpan.FromSeconds(20));
                    await fixture.Broker.RestartAsync();
                }
            },
            publishWithin: TimeSpan.FromSeconds(30),
            output);
    }

    [Fact]
    public async Task Request_reply_works_after_a_restart()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        await Outages.RequestReplyAcrossAsync(bus, Unique("rpc"), () => fixture.Broker.RestartAsync(), output);
    }
}
