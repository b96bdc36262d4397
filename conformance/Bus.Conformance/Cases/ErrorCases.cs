using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using static Bus.Conformance.CaseContext;

namespace Bus.Conformance.Cases;

/// <summary>errors: bad input fails early and clearly; failures never leak secrets or stop a subscription.</summary>
internal static class ErrorCases
{
    public static IEnumerable<ConformanceCase> All =>
    [
        new("illegal_topic", "errors", BusFeatures.None, "empty, too long and illegal names fail before sending; the bus still works", IllegalTopic),
        new("largest_message", "errors", BusFeatures.None, "a message within 1 KiB of the declared maximum size (body, key, header and id) arrives byte for byte", LargestMessage),
        new("message_too_large", "errors", BusFeatures.None, "one byte over the limit fails before sending, naming the limit", MessageTooLarge),
        new("unreachable_broker", "errors", BusFeatures.RemoteBroker, "a closed port fails within the connect timeout, without the password", UnreachableBroker),
        new("throwing_handler", "errors", BusFeatures.None, "a handler throwing for every 5th message does not end the subscription", ThrowingHandler),
        new("ensure_topic_idempotent", "errors", BusFeatures.None, "ensuring twice succeeds; conflicting options give a clear error", EnsureTopicIdempotent),
    ];

    private static async Task ExpectWorkingAsync(CaseContext ctx)
    {
        var topic = ctx.Topic("still-ok");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        await ctx.Bus.PublishAsync(topic, "still working");
        var message = await ctx.ReceiveAsync(consumer, "a message after the error");
        CheckEqual("still working", message.GetText(), "body after the error");
        await message.AckAsync();
    }

    private static async Task<BusException> ExpectBusErrorAsync(Func<Task> action, string what)
    {
        try
        {
            await action();
        }
        catch (BusException ex)
        {
            return ex;
        }
        catch (Exception ex)
        {
            throw new CaseFailedException($"{what}: expected a BusException, got {ex.GetType().Name}: {ex.Message}");
        }

        throw new CaseFailedException($"{what}: no error");
    }

    private static async Task IllegalTopic(CaseContext ctx)
    {
        var tooLong = new string('t', ctx.Capabilities.MaxTopicNameLength + 1);
        foreach (var (topic, label) in new[] { ("", "empty"), (tooLong, "too long"), ("bad topic/ü*?#", "illegal characters") })
        {
            var error = await ExpectBusErrorAsync(() => ctx.Bus.PublishAsync(topic, "x").AsTask(), $"publish to an {label} topic");
            CheckEqual(BusFailureReason.InvalidTopic, error.Reason, $"{label} topic: failure reason");
            Check(error.Message.Contains(ctx.Bus.Backend, StringComparison.Ordinal), $"{label} topic: the message does not name the backend: {error.Message}");
            var subscribeError = await ExpectBusErrorAsync(() => ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup("g")).AsTask(), $"subscribe to an {label} topic");
            CheckEqual(BusFailureReason.InvalidTopic, subscribeError.Reason, $"{label} topic (subscribe): failure reason");
        }

        await ExpectWorkingAsync(ctx);
    }

    private static async Task LargestMessage(CaseContext ctx)
    {
        // The limit counts the whole message as the backend encodes it (body, key, headers, ids), and how much the
        // metadata takes differs by backend: 1 KiB is left for it.
        var limit = ctx.Capabilities.MaxMessageSize;
        var topic = ctx.Topic("largest");
        await using var consumer = await ctx.Bus.CreateConsumerAsync(topic, SubscriptionOptions.ForGroup(ctx.Group()));
        var body = new byte[limit - 1024];
        new Random(11).NextBytes(body);
        var largest = new OutgoingMessage(body) { Key = "large-key" };
        largest.Headers["h"] = "v";
        try
        {
            await ctx.Bus.PublishAsync(topic, largest);
        }
        catch (BusException ex)
        {
            throw new CaseFailedException($"a body of {body.Length} bytes, 1 KiB under the declared maximum of {limit}, was refused: {ex.GetType().Name}: {ex.Message}");
        }

        var received = await ctx.ReceiveAsync(consumer, $"the message of {body.Length} bytes");
        ctx.Report("body_bytes", body.Length);
        CheckEqual(largest.MessageId, received.MessageId, "message id");
        Check(received.Body.Span.SequenceEqual(body), $"the body of {body.Length} bytes arrived changed ({received.Body.Length} bytes)");
        CheckEqual("large-key", received.Key, "key");
        CheckEqual("v", received.Headers.GetValueOrDefault("h"), "header");
        await received.AckAsync();
    }

    private static async Task MessageTooLarge(CaseContext ctx)
    {
        var limit = ctx.Capabilities.MaxMessageSize;
        var topic = ctx.Topic("large");
        var error = await ExpectBusErrorAsync(() => ctx.Bus.PublishAsync(topic, new OutgoingMessage(new byte[limit + 1])).AsTask(), "publishing one byte over the limit");
        Check(error is MessageTooLargeException, $"expected MessageTooLargeException, got {error.GetType().Name}");
        CheckEqual(limit, (int)((MessageTooLargeException)error).Limit, "reported limit");
        Check(error.Message.Contains(limit.ToString(System.Globalization.CultureInfo.InvariantCulture), StringComparison.Ordinal), $"the message does not name the limit: {error.Message}");
        ctx.Report("limit_bytes", limit);
        await ExpectWorkingAsync(ctx);
    }

    /// <summary>
    /// <paramref name="url"/>'s scheme and query (without an endpoint override, which would point elsewhere) with the
    /// test password and a port of this machine that nothing listens on.
    /// </summary>
    private static string UnreachableLike(string url, string password)
    {
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        var scheme = schemeEnd > 0 ? url[..schemeEnd] : url;
        var queryStart = url.IndexOf('?', StringComparison.Ordinal);
        var query = queryStart < 0
            ? ""
            : string.Join('&', url[(queryStart + 1)..].Split('&', StringSplitOptions.RemoveEmptyEntries)
                .Where(pair => !PointsAtABroker(pair[..Math.Max(0, pair.IndexOf('='))])));
        int port;
        using (var socket = new System.Net.Sockets.Socket(System.Net.Sockets.AddressFamily.InterNetwork, System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp))
        {
            // A port the system has just handed out and that nothing listens on once the socket is closed.
            socket.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, 0));
            port = ((System.Net.IPEndPoint)socket.LocalEndPoint!).Port;
        }

        return string.Create(System.Globalization.CultureInfo.InvariantCulture, $"{scheme}://bus:{password}@127.0.0.1:{port}{(query.Length == 0 ? "" : "?" + query)}");
    }

    /// <summary>A setting that names a broker to talk to (an endpoint override, Kafka's bootstrap servers).</summary>
    private static bool PointsAtABroker(string setting)
        => setting.EndsWith("endpoint", StringComparison.OrdinalIgnoreCase) || setting.EndsWith("bootstrap.servers", StringComparison.OrdinalIgnoreCase);

    private static async Task UnreachableBroker(CaseContext ctx)
    {
        const string Password = "s3cr3t-Pa55word-zq";
        // A user's run (bus conformance --url …) need not know what this case wants: without a URL of its own, the same
        // kind of URL, pointed at a closed port here.
        var derived = ctx.Backend.UnreachableUrl is null;
        var url = ctx.Backend.UnreachableUrl ?? UnreachableLike(ctx.Backend.Url, Password);
        if (derived)
        {
            ctx.Note("unreachable URL derived from the backend's: its scheme and query, 127.0.0.1 and a closed port");
        }

        Check(url.Contains(Password, StringComparison.Ordinal), $"the unreachable URL must carry the password '{Password}'");
        var logs = new CapturingLoggerFactory();
        var timeout = TimeSpan.FromSeconds(3);
        var options = ctx.Backend.CreateOptions();
        options.Url = url;
        if (derived)
        {
            // Settings that name the live broker would otherwise send the derived URL's bus there after all.
            foreach (var setting in options.Settings.Keys.Where(PointsAtABroker).ToList())
            {
                options.Settings.Remove(setting);
            }
        }
        options.ConnectTimeout = timeout;
        options.OperationTimeout = timeout;
        var watch = Stopwatch.StartNew();
        BusException error;
        await using (var bus = MessageBus.Create(options, logs))
        {
            error = await ExpectBusErrorAsync(() => bus.PublishAsync(ctx.Topic("nowhere"), "x").AsTask(), "publishing to a closed port");
        }

        var elapsed = watch.Elapsed;
        ctx.Report("failed_after_ms", (long)elapsed.TotalMilliseconds);
        Check(error.Reason is BusFailureReason.Connection or BusFailureReason.Timeout, $"failure reason {error.Reason}, expected Connection: {error.Message}");
        Check(elapsed < timeout + TimeSpan.FromSeconds(5), $"took {elapsed.TotalSeconds:0.0} s with a {timeout.TotalSeconds:0} s connect timeout");
        Check(!error.ToString().Contains(Password, StringComparison.Ordinal), "the password appears in the exception");
        Check(!logs.Text.Contains(Password, StringComparison.Ordinal), "the password appears in the logs");
        Check(error.Message.Contains(ctx.Bus.Backend, StringComparison.Ordinal), $"the error does not name the backend: {error.Message}");
    }

    private static async Task ThrowingHandler(CaseContext ctx)
    {
        var topic = ctx.Topic("throwing");
        await ctx.Bus.EnsureTopicAsync(topic);
        var handled = new ConcurrentDictionary<int, byte>();
        var subscription = await ctx.Bus.SubscribeAsync(topic, (m, _) =>
        {
            var sequence = SequenceOf(m);
            if (sequence % 5 == 0)
            {
                throw new InvalidOperationException($"every fifth message fails ({sequence})");
            }

            handled.TryAdd(sequence, 0);
            return default;
        }, new SubscriptionOptions { Group = ctx.Group(), MaxDeliveries = 2, RetryDelay = TimeSpan.FromMilliseconds(10), MaxRetryDelay = TimeSpan.FromMilliseconds(10) });
        await using var subscriptionScope = subscription;
        await using var deadLetters = await ctx.Bus.CreateConsumerAsync(ctx.Bus.GetDeadLetterTopic(topic), new SubscriptionOptions { Group = BusDefaults.DeadLetterGroup, MaxInFlight = 64, PerKeyOrdering = false });
        await ctx.Bus.PublishBatchAsync(topic, Enumerable.Range(1, 100).Select(i => Numbered($"m{i}", $"key-{i % 7}", i)).ToList());
        var dead = new ConcurrentDictionary<string, byte>();
        await ctx.WaitUntilAsync(() =>
        {
            while (deadLetters.TryReceive(out var copy))
            {
                dead.TryAdd(copy.MessageId, 0);
                _ = copy.AckAsync().AsTask();
            }

            return handled.Count >= 80 && dead.Count >= 20;
        }, "80 handled and 20 dead-lettered", () => $"{handled.Count} handled, {dead.Count} dead-lettered");
        ctx.Report("handled", handled.Count);
        ctx.Report("dead_lettered", dead.Count);
        Check(!subscription.Completion.IsCompleted, "the subscription ended");
    }

    private static async Task EnsureTopicIdempotent(CaseContext ctx)
    {
        var topic = ctx.Topic("ensure");
        await ctx.Bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 2 });
        await ctx.Bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 2 });
        await ctx.Bus.EnsureTopicAsync(topic);
        if (!ctx.Capabilities.Supports(BusFeatures.TopicConflictDetection))
        {
            ctx.Note("conflict not checked: " + ctx.Capabilities.ExplainMissing(BusFeatures.TopicConflictDetection));
        }
        else
        {
            var error = await ExpectBusErrorAsync(() => ctx.Bus.EnsureTopicAsync(topic, new TopicOptions { Partitions = 3 }).AsTask(), "ensuring with conflicting options");
            CheckEqual(BusFailureReason.TopicConflict, error.Reason, "failure reason");
            Check(error.Message.Contains(topic, StringComparison.Ordinal), $"the error does not name the topic: {error.Message}");
        }

        await ExpectWorkingAsync(ctx);
    }

    /// <summary>Collects every log line and exception text, to check that no secret is logged.</summary>
    private sealed class CapturingLoggerFactory : ILoggerFactory, ILogger
    {
        private readonly ConcurrentQueue<string> _lines = new();

        public string Text => string.Join('\n', _lines);

        public void AddProvider(ILoggerProvider provider)
        {
        }

        public ILogger CreateLogger(string categoryName) => this;

        public void Dispose()
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            _lines.Enqueue(formatter(state, exception) + " " + state + " " + exception);
        }
    }
}
