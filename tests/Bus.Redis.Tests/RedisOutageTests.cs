using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
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
        return MessageBus.Create(new BusOptions { Url = url, ConnectTimeout = TimeSpan.FromSeconds(5), OperationTimeout = OperationTimeout }, new TimedLogs(output));
    }

    /// <summary>An endpoint from BUS_TEST_REDIS_URL cannot be frozen or restarted by the tests: they are skipped there, saying so.</summary>
    private void RequireLifecycleControl()
        => Skip.IfNot(fixture.Broker.CanControlLifecycle, $"{fixture.Broker} cannot be paused or restarted by the tests");

    /// <summary>
    /// The bus's log lines in the test's output, with milliseconds since the bus was created; the client's own
    /// connection log (Bus.Redis.Client) at Debug, the rest from Information.
    /// </summary>
    private sealed class TimedLogs(ITestOutputHelper output) : ILoggerFactory
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName == "Bus.Redis.Client" ? LogLevel.Debug : LogLevel.Information);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public void Dispose()
        {
        }

        private sealed class Logger(TimedLogs owner, LogLevel minimum) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (!IsEnabled(logLevel))
                {
                    return;
                }

                try
                {
                    var error = exception is null ? string.Empty : $" [{exception.GetType().Name}: {exception.Message.Split('\n')[0]}]";
                    owner.Write($"{owner._clock.ElapsedMilliseconds,7} ms {logLevel}: {formatter(state, exception)}{error}");
                }
                catch (InvalidOperationException)
                {
                    // Logged after the test ended (the client goes on reconnecting in the background).
                }
            }
        }

        private void Write(string line) => output.WriteLine(line);
    }

    private static async Task PublishUntilRecoveredAsync(MessageBus bus, string topic, OutgoingMessage message, TimeSpan within)
    {
        var deadline = DateTime.UtcNow + within;
        while (true)
        {
            try
            {
                await bus.PublishAsync(topic, message);
                return;
            }
            catch (BusException ex) when (ex.IsTransient && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
            }
        }
    }

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

    [SkippableFact]
    public async Task A_publish_to_a_frozen_server_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        var topic = Unique("pub");
        await bus.EnsureTopicAsync(topic);
        await bus.PublishAsync(topic, "warm");

        var (error, took) = await FailWhileFrozenAsync("publish", async () => await bus.PublishAsync(topic, "frozen"));

        AssertTimelyTransientFailure(error, took, topic);
        await PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(20));
    }

    [SkippableFact]
    public async Task A_batch_publish_to_a_frozen_server_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        var topic = Unique("batch");
        await bus.EnsureTopicAsync(topic);
        await bus.PublishAsync(topic, "warm");

        var (error, took) = await FailWhileFrozenAsync("batch", async () => await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("a"), OutgoingMessage.FromText("b")]));

        AssertTimelyTransientFailure(error, took, topic);
        await PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(20));
        await bus.PublishBatchAsync(topic, [OutgoingMessage.FromText("c"), OutgoingMessage.FromText("d")]);
    }

    [SkippableFact]
    public async Task A_publish_to_a_new_topic_on_a_frozen_server_fails_within_the_operation_timeout()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        await bus.PublishAsync(Unique("warm"), "warm");
        var topic = Unique("new");

        var (error, took) = await FailWhileFrozenAsync("publish to a new topic", async () => await bus.PublishAsync(topic, "frozen"));

        AssertTimelyTransientFailure(error, took, topic);
        await PublishUntilRecoveredAsync(bus, topic, OutgoingMessage.FromText("after"), TimeSpan.FromSeconds(20));
    }

    [SkippableFact]
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

        await fixture.Broker.PauseAsync();
        var watch = Stopwatch.StartNew();
        Exception? thrown = null;
        try
        {
            await bus.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(45));
        }
        catch (Exception ex)
        {
            thrown = ex;
        }
        finally
        {
            output.WriteLine($"dispose took {watch.ElapsedMilliseconds} ms");
            await fixture.Broker.UnpauseAsync();
        }

        Assert.Null(thrown);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"dispose took {watch.Elapsed}");
        Assert.Equal("warm", held.GetText());
        GC.KeepAlive(subscription);
    }

    /// <summary>
    /// A subscription and a pull consumer live through a freeze longer than the client needs to give its connection
    /// up, and through a restart: everything published arrives.
    /// </summary>
    [SkippableTheory]
    [InlineData("pause")]
    [InlineData("restart")]
    public async Task Subscriptions_resume_after_an_outage_with_nothing_lost(string kind)
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        var topic = Unique("resume");
        var handled = new ConcurrentDictionary<string, int>();
        await using var subscription = await bus.SubscribeAsync(
            topic,
            (m, _) =>
            {
                handled.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1);
                return ValueTask.CompletedTask;
            },
            new SubscriptionOptions { Group = "sub", MaxInFlight = 8 });
        await using var consumer = await bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = "pull", MaxInFlight = 8 });
        var pulled = new ConcurrentDictionary<string, int>();
        using var stop = new CancellationTokenSource();
        var pulling = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    var m = await consumer.ReceiveAsync(stop.Token);
                    pulled.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1);
                    try
                    {
                        await m.AckAsync();
                    }
                    catch (BusException)
                    {
                        // Not acknowledged: delivered again later, which the test tolerates.
                    }
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        });

        var sent = new List<string>();
        async Task PublishSomeAsync(string prefix, int count)
        {
            for (var i = 0; i < count; i++)
            {
                var message = OutgoingMessage.FromText($"{prefix} {i}", key: $"k{i % 3}");
                await PublishUntilRecoveredAsync(bus, topic, message, TimeSpan.FromSeconds(30));
                sent.Add(message.MessageId!);
            }
        }

        async Task WaitForAllAsync(TimeSpan within)
        {
            var deadline = Stopwatch.StartNew();
            while (deadline.Elapsed < within && !(sent.All(handled.ContainsKey) && sent.All(pulled.ContainsKey)))
            {
                await Task.Delay(100);
            }
        }

        await PublishSomeAsync("before", 20);
        var outage = Stopwatch.StartNew();
        if (kind == "pause")
        {
            await fixture.Broker.PauseAsync();
            // The consumers poll all the time, so the client's keep-alive (60 s, a PING after that long without
            // traffic) never comes into play; what gives the connection up is StackExchange.Redis's dead-socket check
            // (no reads for 4 x the operation timeout while commands time out: about 13 s here, seen in the client's
            // log as "Dead socket detected"). The freeze outlasts it, so the client reconnects after it.
            await Task.Delay(TimeSpan.FromSeconds(18));
            await fixture.Broker.UnpauseAsync();
        }
        else
        {
            // Entries that only the server's memory holds are lost with a restart unless it saves them (the images
            // snapshot on shutdown by default): those published before are required to arrive first, so that the
            // check below does not depend on the server's persistence.
            await WaitForAllAsync(TimeSpan.FromSeconds(20));
            await fixture.Broker.RestartAsync();
        }

        output.WriteLine($"{kind} took {outage.ElapsedMilliseconds} ms");
        var recovered = Stopwatch.StartNew();
        await PublishSomeAsync("after", 20);
        output.WriteLine($"publishing again took {recovered.ElapsedMilliseconds} ms");
        await WaitForAllAsync(TimeSpan.FromSeconds(30));
        output.WriteLine($"all received {recovered.ElapsedMilliseconds} ms after the outage");

        await stop.CancelAsync();
        await pulling;
        output.WriteLine($"handled {handled.Count}, pulled {pulled.Count} of {sent.Count}");
        Assert.Equal(0, sent.Count(id => !handled.ContainsKey(id)));
        Assert.Equal(0, sent.Count(id => !pulled.ContainsKey(id)));
        Assert.False(subscription.Completion.IsCompleted);
    }

    [SkippableFact]
    public async Task Request_reply_works_after_a_restart()
    {
        RequireLifecycleControl();

        await using var bus = CreateBus();
        var topic = Unique("rpc");
        await using var server = await bus.SubscribeAsync(
            topic,
            async (m, token) => await bus.ReplyAsync(m, OutgoingMessage.FromText(m.GetText()), token),
            SubscriptionOptions.ForGroup("server"));
        var first = await bus.RequestAsync(topic, OutgoingMessage.FromText("one"), TimeSpan.FromSeconds(10));
        Assert.Equal("one", first.GetText());

        await fixture.Broker.RestartAsync();

        var deadline = Stopwatch.StartNew();
        ReceivedMessage? reply = null;
        while (reply is null)
        {
            try
            {
                reply = await bus.RequestAsync(topic, OutgoingMessage.FromText("two"), TimeSpan.FromSeconds(5));
            }
            catch (Exception ex) when ((ex is BusException { IsTransient: true } || ex is TimeoutException) && deadline.Elapsed < TimeSpan.FromSeconds(30))
            {
                output.WriteLine($"{deadline.ElapsedMilliseconds} ms: {ex.GetType().Name}: {ex.Message}");
                await Task.Delay(250);
            }
        }

        output.WriteLine($"replied {deadline.ElapsedMilliseconds} ms after the restart");
        Assert.Equal("two", reply.GetText());
    }
}
