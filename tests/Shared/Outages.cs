using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Xunit;
using Xunit.Abstractions;

namespace Bus.Tests.Shared;

/// <summary>
/// What the adapters' outage tests (a broker frozen, stopped or restarted under a bus) share. Compiled into each
/// adapter's test project (tests/Shared), since no adapter's tests may reference another's.
/// </summary>
internal static class Outages
{
    /// <summary>
    /// Publishes, retrying the transient failures of a client that is reconnecting, for up to
    /// <paramref name="within"/> (a minute by default).
    /// </summary>
    public static async Task PublishUntilRecoveredAsync(MessageBus bus, string topic, OutgoingMessage message, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
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

    /// <summary>
    /// Freezes the broker (<paramref name="freeze"/>), disposes <paramref name="bus"/> and thaws the broker
    /// (<paramref name="thaw"/>): disposing must complete without an error within 15 s (the adapters bound each step of
    /// closing by the operation timeout, at most 5 to 10 s, and later steps briefly once one went unanswered).
    /// </summary>
    public static async Task DisposeWhileFrozenAsync(MessageBus bus, Func<Task> freeze, Func<Task> thaw, ITestOutputHelper output)
    {
        await freeze();
        var watch = Stopwatch.StartNew();
        Exception? thrown = null;
        try
        {
            // The cap only keeps a regression from holding the run: 150 s is what SQS's closes took before they were bounded.
            await bus.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(150));
        }
        catch (Exception ex)
        {
            thrown = ex;
        }
        finally
        {
            output.WriteLine($"dispose took {watch.ElapsedMilliseconds} ms");
            await thaw();
        }

        Assert.Null(thrown);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(15), $"dispose took {watch.Elapsed}");
    }

    /// <summary>
    /// A batch of <paramref name="count"/> cut short part way: the broker freezes (<paramref name="freeze"/>) once the
    /// first message of the batch has reached a consumer, so some of the batch has been confirmed by then. With
    /// <paramref name="freezeFromInside"/> the freeze happens inside the call, when the transport is about to send the
    /// message in the middle (its second read of it; core's validation reads each message first), and the transport
    /// waits for it: that message and the ones after it go to a frozen broker. A freeze from outside the call often
    /// landed after Redis and the Kafka mock had taken the whole batch.
    /// The batch fails with a <see cref="PublishBatchException"/> that names some messages confirmed and some not.
    /// After <paramref name="thaw"/>, the test publishes only <see cref="PublishBatchException.UnconfirmedMessages"/>
    /// again (as an application would, until it succeeds), and every message of the batch must then arrive: so every
    /// message the exception reported confirmed had been stored. Duplicates (an unconfirmed message that had been
    /// stored after all) are allowed and counted.
    /// </summary>
    /// <param name="ackTimeout">
    /// The consumer's ack timeout: a read that the outage cut short may have been served all the same, and what it
    /// was given comes back after the ack timeout, which the wait for every message must outlast.
    /// </param>
    public static async Task BatchCutShortAsync(MessageBus bus, string topic, int count, Func<Task> freeze, Func<Task> thaw, ITestOutputHelper output, bool freezeFromInside = false, TimeSpan? ackTimeout = null)
    {
        var options = new SubscriptionOptions { Group = "batch", MaxInFlight = 256 };
        if (ackTimeout is { } timeout)
        {
            options.AckTimeout = timeout;
        }

        await using var consumer = await bus.CreateConsumerAsync(topic, options);
        var messages = Enumerable.Range(0, count).Select(i => OutgoingMessage.FromText($"m{i}")).ToList();
        var received = new ConcurrentDictionary<string, int>();
        using var stop = new CancellationTokenSource();
        var firstArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var draining = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                ReceivedMessage m;
                try
                {
                    m = await consumer.ReceiveAsync(stop.Token);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                received.AddOrUpdate(m.MessageId, 1, (_, n) => n + 1);
                firstArrived.TrySetResult();
                try
                {
                    await m.AckAsync();
                }
                catch (BusException)
                {
                    // Not acknowledged: delivered again later, a duplicate the test tolerates.
                }
            }
        });

        async Task FreezeOnceOneArrivedAsync()
        {
            await firstArrived.Task.WaitAsync(TimeSpan.FromSeconds(30));
            await freeze();
        }

        var watch = Stopwatch.StartNew();
        Task publishing;
        if (freezeFromInside)
        {
            var freezing = new FreezingList(messages, count / 2, FreezeOnceOneArrivedAsync);
            publishing = Task.Run(() => bus.PublishBatchAsync(topic, freezing).AsTask()); // the freeze blocks the call's thread
            await freezing.Frozen.WaitAsync(TimeSpan.FromSeconds(60));
        }
        else
        {
            publishing = bus.PublishBatchAsync(topic, messages).AsTask();
            await FreezeOnceOneArrivedAsync();
        }
        output.WriteLine($"interrupted {watch.ElapsedMilliseconds} ms after the batch began, {received.Count} received by then");
        PublishBatchException error;
        try
        {
            error = await Assert.ThrowsAsync<PublishBatchException>(() => publishing.WaitAsync(TimeSpan.FromSeconds(60)));
        }
        finally
        {
            await thaw();
        }

        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {error.Message}");
        Assert.True(error.IsTransient, error.ToString());
        Assert.Equal(topic, error.Topic);
        Assert.InRange(error.ConfirmedCount, 1, count - 1);
        var position = new Dictionary<OutgoingMessage, int>(ReferenceEqualityComparer.Instance);
        for (var i = 0; i < messages.Count; i++)
        {
            position[messages[i]] = i;
        }

        var indexes = error.UnconfirmedMessages.Select(m => position[m]).ToList();
        Assert.True(indexes.Zip(indexes.Skip(1)).All(p => p.First < p.Second), "unconfirmed messages are the caller's, in batch order, each once");
        var reportedUnconfirmed = new HashSet<OutgoingMessage>(error.UnconfirmedMessages, ReferenceEqualityComparer.Instance);

        var retries = 0;
        for (var unconfirmed = error.UnconfirmedMessages; unconfirmed.Count > 0; retries++)
        {
            try
            {
                await bus.PublishBatchAsync(topic, unconfirmed);
                unconfirmed = [];
            }
            catch (PublishBatchException again) when (again.IsTransient && watch.Elapsed < TimeSpan.FromSeconds(90))
            {
                output.WriteLine($"{watch.ElapsedMilliseconds} ms: publishing the unconfirmed again: {again.Message}");
                unconfirmed = again.UnconfirmedMessages;
                await Task.Delay(250);
            }
        }

        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30) + options.AckTimeout && !messages.All(m => received.ContainsKey(m.MessageId!)))
        {
            await Task.Delay(100);
        }

        await stop.CancelAsync();
        await draining;
        var missing = messages.Where(m => !received.ContainsKey(m.MessageId!)).ToList();
        var confirmedMissing = missing.Count(m => !reportedUnconfirmed.Contains(m));
        output.WriteLine($"{error.ConfirmedCount} of {count} confirmed; published the rest again in {retries} call(s); " +
            $"received {received.Count} distinct, {received.Values.Sum() - received.Count} duplicates, {missing.Count} missing ({confirmedMissing} of them reported confirmed)");
        Assert.Equal(0, confirmedMissing);
        Assert.Empty(missing);
    }

    /// <summary>
    /// Request/reply on <paramref name="topic"/> answers before <paramref name="restart"/> and again after it: requests
    /// that fail while the client reconnects (transient errors, timeouts) are retried for up to 40 s.
    /// </summary>
    public static async Task RequestReplyAcrossAsync(MessageBus bus, string topic, Func<Task> restart, ITestOutputHelper output)
    {
        await using var server = await bus.SubscribeAsync(
            topic,
            async (m, token) => await bus.ReplyAsync(m, OutgoingMessage.FromText(m.GetText()), token),
            SubscriptionOptions.ForGroup("server"));
        var first = await bus.RequestAsync(topic, OutgoingMessage.FromText("one"), TimeSpan.FromSeconds(10));
        Assert.Equal("one", first.GetText());

        await restart();

        var deadline = Stopwatch.StartNew();
        ReceivedMessage? reply = null;
        while (reply is null)
        {
            try
            {
                reply = await bus.RequestAsync(topic, OutgoingMessage.FromText("two"), TimeSpan.FromSeconds(5));
            }
            catch (Exception ex) when ((ex is BusException { IsTransient: true } || ex is TimeoutException) && deadline.Elapsed < TimeSpan.FromSeconds(40))
            {
                output.WriteLine($"{deadline.ElapsedMilliseconds} ms: {ex.GetType().Name}: {ex.Message}");
                await Task.Delay(250);
            }
        }

        output.WriteLine($"replied {deadline.ElapsedMilliseconds} ms after the restart");
        Assert.Equal("two", reply.GetText());
    }

    /// <summary>
    /// A subscription (group "sub") and a pull consumer (group "pull") on <paramref name="topic"/> live through
    /// <paramref name="outage"/>: 20 messages published before it and 20 after must all reach both within 30 s of the
    /// last publish. The outage gets a wait for everything published so far (for a restart of a broker that keeps
    /// messages only in memory).
    /// </summary>
    public static async Task NothingLostAcrossAsync(MessageBus bus, string topic, Func<Func<TimeSpan, Task>, Task> outage, TimeSpan publishWithin, ITestOutputHelper output)
    {
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
                await PublishUntilRecoveredAsync(bus, topic, message, publishWithin);
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
        var took = Stopwatch.StartNew();
        await outage(WaitForAllAsync);
        output.WriteLine($"the outage took {took.ElapsedMilliseconds} ms");
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
}

/// <summary>
/// A batch's messages that freeze the broker (synchronously, so the transport waits) when the transport reads the
/// message at <paramref name="index"/>: its second read, after core's validation.
/// </summary>
internal sealed class FreezingList(IReadOnlyList<OutgoingMessage> messages, int index, Func<Task> freeze) : IReadOnlyList<OutgoingMessage>
{
    private readonly TaskCompletionSource _frozen = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _reads;

    public Task Frozen => _frozen.Task;

    public int Count => messages.Count;

    public OutgoingMessage this[int i]
    {
        get
        {
            if (i == index && Interlocked.Increment(ref _reads) == 2)
            {
                freeze().GetAwaiter().GetResult();
                _frozen.TrySetResult();
            }

            return messages[i];
        }
    }

    public IEnumerator<OutgoingMessage> GetEnumerator() => messages.GetEnumerator();

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>
/// The bus's log lines in a test's output, with milliseconds since the factory was made: from Information, and from
/// Debug for <paramref name="debugCategory"/> (a client's own connection log).
/// </summary>
internal sealed class TimedLogs(ITestOutputHelper output, string? debugCategory = null) : ILoggerFactory
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    private void Write(string line) => output.WriteLine(line);

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName == debugCategory ? LogLevel.Debug : LogLevel.Information);

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
                // Logged after the test ended (a close or a reconnection going on in the background).
            }
        }
    }
}
