using Bus.Transport;
using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Bus.Redis.Internal;

/// <summary>
/// Redis Streams: a topic is a stream key, a group a consumer group, a publish one XADD (confirmed when Redis
/// replies). One multiplexed connection serves publishing, settling and every receiver's polling.
/// </summary>
internal sealed class RedisTransport : MessageTransport
{
    private readonly TransportContext _context;
    private readonly RedisSettings _settings;
    private readonly ILogger _logger;
    private readonly ILogger _clientLogger;
    private ConnectionMultiplexer? _connection;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, RedisReceiver[]> _local = new(StringComparer.Ordinal);
    private IDatabase? _database;

    public RedisTransport(TransportContext context, RedisSettings settings, BackendCapabilities capabilities)
    {
        _context = context;
        _settings = settings;
        Capabilities = capabilities;
        _logger = context.LoggerFactory.CreateLogger("Bus.Redis");
        _clientLogger = context.LoggerFactory.CreateLogger("Bus.Redis.Client");
        // Once a step went unanswered, the next wait only long enough for a consumer's loop that was pausing (not
        // waiting for the server) to see that it was stopped.
        CloseWaits = new CloseWaits(context.CloseTimeout, TimeSpan.FromMilliseconds(100));
    }

    /// <summary>
    /// How long each step of closing (a consumer's loop, its acks, its release; the connection) waits for the server. The
    /// consumers' loops call <see cref="CloseWaits.Answered"/> after each successful poll.
    /// </summary>
    internal CloseWaits CloseWaits { get; }

    /// <summary>
    /// Waits for <paramref name="step"/> of a close (see <see cref="CloseWaits"/>); true if it completed.
    /// StackExchange.Redis takes no cancellation token: a command to a frozen server (TCP up, nothing answered) fails
    /// only after the operation timeout plus up to a second (the heartbeat that checks for timeouts), and each
    /// consumer's close waited for up to three such commands one after the other (its poll in flight, its last acks,
    /// the release of its entries), so a bus with a subscription and a consumer took 15 s to dispose against a frozen
    /// server. The step is not abandoned: its commands are on their way, and a server that wakes up carries them out.
    /// </summary>
    internal async Task<bool> WaitOnCloseAsync(Task step, string what)
    {
        var silent = CloseWaits.BrokerSilent;
        // The step's own failure is the caller's to observe (a RedisTimeoutException is a TimeoutException too).
        if (await CloseWaits.WaitAsync(step).ConfigureAwait(false))
        {
            return true;
        }

        if (!silent)
        {
            Log.ServerSilentOnClose(_logger, what, CloseWaits.Budget);
        }

        return false;
    }

    public override BackendCapabilities Capabilities { get; }

    internal IDatabase Database => _database ?? throw new InvalidOperationException("redis: the transport is not connected.");

    internal RedisSettings Settings => _settings;

    public override async ValueTask ConnectAsync(CancellationToken cancellationToken)
    {
        var watch = new ConnectFailureWatch(_clientLogger);
        var configuration = _settings.Configuration.Clone();
        configuration.LoggerFactory = watch;
        var connecting = ConnectionMultiplexer.ConnectAsync(configuration);
        try
        {
            var first = await Task.WhenAny(connecting, watch.Refused).WaitAsync(cancellationToken).ConfigureAwait(false);
            if (first != connecting)
            {
                // The client would report this refusal only when its ConnectTimeout runs out (see ConnectFailureWatch).
                throw await watch.Refused.ConfigureAwait(false);
            }

            _connection = await connecting.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            // A connect that finishes after we gave up must not leak its sockets (nor leave its failure unobserved).
            _ = connecting.ContinueWith(
                static t =>
                {
                    if (t.IsCompletedSuccessfully)
                    {
                        t.Result.Dispose();
                    }
                    else
                    {
                        _ = t.Exception;
                    }
                },
                CancellationToken.None,
                TaskContinuationOptions.None,
                TaskScheduler.Default);
            Log.ConnectFailed(_logger, _context.RedactedUrl, ex);
            if (ex is OperationCanceledException)
            {
                throw;
            }

            // StackExchange.Redis's messages name the endpoint, never the password; keep only the message. It reports
            // refused credentials and a server certificate it could not verify alike, as an authentication failure:
            // only the first is Unauthorized. Neither is worth retrying until someone changes a setting.
            var authentication = ex is RedisConnectionException { FailureType: ConnectionFailureType.AuthenticationFailure };
            var refused = authentication && ex.InnerException is not System.Security.Authentication.AuthenticationException;
            // A refusal seen by the watch is the failed connection's own exception, whose message is the client's state
            // dump: its cause (the server's error, or why the certificate was not accepted) says more.
            var detail = ReferenceEquals(ex, watch.Refused.IsCompletedSuccessfully ? watch.Refused.Result : null) && ex.InnerException is { } cause
                ? $"the handshake was refused: {cause.Message}"
                : WithoutClientAdvice(ex.Message);
            throw new BusException($"redis: cannot connect to {_context.RedactedUrl}: {detail}", refused ? BusFailureReason.Unauthorized : BusFailureReason.Connection, RedisTransportFactory.BackendName, null, isTransient: !authentication);
        }

        _database = _connection.GetDatabase(_settings.Database);
        Log.Connected(_logger, _context.RedactedUrl, _settings.Database, _settings.Tls);
    }

    /// <summary>
    /// StackExchange.Redis ends a failed first connect with advice to set abortConnect=false, a connection-string
    /// option this adapter does not take (the bus retries connecting itself, on the next operation): left out so that
    /// nobody adds it to the URI.
    /// </summary>
    internal static string WithoutClientAdvice(string message)
    {
        // The advice is one sentence in the middle: what StackExchange.Redis appends after it (the failure's detail,
        // e.g. "ConnectTimeout") stays.
        const string AdviceEnd = "in your code.";
        var advice = message.IndexOf(" To allow this multiplexer to continue retrying", StringComparison.Ordinal);
        var end = advice < 0 ? -1 : message.IndexOf(AdviceEnd, advice, StringComparison.Ordinal);
        return end < 0 ? message : message[..advice] + message[(end + AdviceEnd.Length)..];
    }

    public override string? ValidateTopicName(string topic) => RedisTransportFactory.ValidateStreamName(topic);

    public override async ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        // A stream has no options to compare; it only needs its durable groups (XGROUP CREATE ... 0 MKSTREAM, so they
        // see everything written from now on, and anything already there).
        foreach (var group in topic.DurableGroups)
        {
            cancellationToken.ThrowIfCancellationRequested();
            await CreateGroupAsync(topic.Name, group, "0").ConfigureAwait(false);
        }
    }

    /// <summary>StackExchange.Redis fails a command after its AsyncTimeout, which the settings set to the bus's OperationTimeout.</summary>
    public override bool BoundsPublishTime => true;

    /// <summary>Deletes the stream (its groups and pending lists go with it) and the topic's delayed-message set.</summary>
    public override async ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
        => await Database.KeyDeleteAsync([topic.Name, DelayedKey(topic.Name)]).WaitAsync(cancellationToken).ConfigureAwait(false);

    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        if (message.Delay is { } delay && delay > TimeSpan.Zero)
        {
            return PublishDelayedAsync(topic, message, delay, cancellationToken);
        }

        var pending = Add(topic, message);
        WakeLocalConsumers(topic);
        return new ValueTask(cancellationToken.CanBeCanceled ? pending.WaitAsync(cancellationToken) : pending);
    }

    /// <summary>
    /// Every XADD is issued before any is awaited (one round trip's wait for the batch), and local consumers are woken
    /// once. On a failure, the XADDs that Redis answered are marked confirmed.
    /// </summary>
    public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        var pending = new Task?[messages.Count];
        try
        {
            for (var i = 0; i < pending.Length; i++)
            {
                var message = messages[i];
                pending[i] = message.Delay is { } delay && delay > TimeSpan.Zero
                    ? PublishDelayedAsync(topic, message, delay, cancellationToken).AsTask()
                    : Add(topic, message);
            }

            WakeLocalConsumers(topic);
            var all = Task.WhenAll(pending!);
            await (cancellationToken.CanBeCanceled ? all.WaitAsync(cancellationToken) : all).ConfigureAwait(false);
        }
        catch
        {
            confirmations.ConfirmCompleted(pending);
            throw;
        }
    }

    /// <summary>Issues the XADD. Synchronously, so that publishes started in order are written (and get ids) in order.</summary>
    private Task Add(string topic, OutgoingMessage message)
    {
        if (!_settings.Trims)
        {
            return Database.StreamAddAsync(topic, StreamCodec.Encode(message));
        }

        var arguments = new List<object>(24) { new RedisKey(topic) };
        arguments.AddRange(_settings.TrimArguments());
        arguments.Add((RedisValue)"*");
        StreamCodec.AppendFields(message, arguments);
        return Database.ExecuteAsync("XADD", arguments);
    }

    /// <summary>
    /// Consumers of this transport learn of a local publish at once instead of at their next poll. Woken when the XADD
    /// is issued, not when it is confirmed: they read on the same connection, so their XREADGROUP reaches Redis after it.
    /// </summary>
    private void WakeLocalConsumers(string topic)
    {
        if (_local.TryGetValue(topic, out var receivers))
        {
            foreach (var receiver in receivers)
            {
                receiver.Wake();
            }
        }
    }

    /// <summary>The sorted set where delayed messages of <paramref name="topic"/> wait ('#' never occurs in a topic name).</summary>
    internal static RedisKey DelayedKey(string topic) => topic + "#delayed";

    private async ValueTask PublishDelayedAsync(string topic, OutgoingMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        var fields = new List<object>(24);
        StreamCodec.AppendFields(message, fields);
        var arguments = new RedisValue[2 + fields.Count];
        var delayMs = (long)Math.Ceiling(delay.TotalMilliseconds);
        arguments[0] = delayMs;
        var nonce = new byte[16];
        Random.Shared.NextBytes(nonce); // not Guid.NewGuid: that reads /dev/urandom, a system call per message
        arguments[1] = nonce;
        for (var i = 0; i < fields.Count; i++)
        {
            arguments[2 + i] = (RedisValue)fields[i];
        }

        await Database.ScriptEvaluateAsync(RedisScripts.PublishDelayed, [DelayedKey(topic)], arguments).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (_local.TryGetValue(topic, out var receivers))
        {
            foreach (var receiver in receivers)
            {
                receiver.MoveWithin(delayMs);
            }
        }
    }

    internal void Register(string topic, RedisReceiver receiver)
    {
        lock (_local)
        {
            _local[topic] = _local.TryGetValue(topic, out var current) ? [.. current, receiver] : [receiver];
        }
    }

    internal void Unregister(string topic, RedisReceiver receiver)
    {
        lock (_local)
        {
            if (_local.TryGetValue(topic, out var current))
            {
                var rest = current.Where(r => r != receiver).ToArray();
                if (rest.Length == 0)
                {
                    _local.TryRemove(topic, out _);
                }
                else
                {
                    _local[topic] = rest;
                }
            }
        }
    }

    public override async ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
    {
        var start = StreamIds.GroupStart(options.StartPosition);
        await CreateGroupAsync(topic, options.Group, start).ConfigureAwait(false);
        cancellationToken.ThrowIfCancellationRequested();
        var consumer = string.IsNullOrWhiteSpace(options.ConsumerName)
            ? $"{Environment.MachineName}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..10]}"
            : options.ConsumerName;
        var receiver = new RedisReceiver(this, topic, options, consumer, _logger);
        Log.Joined(_logger, topic, options.Group, consumer, start);
        receiver.Start();
        Register(topic, receiver);
        return receiver;
    }

    public override ValueTask DeadLetterAsync(TransportReceiver receiver, ReceivedMessage message, string deadLetterTopic, OutgoingMessage copy, CancellationToken cancellationToken)
        => receiver is RedisReceiver redis
            ? redis.DeadLetterAsync(message, deadLetterTopic, copy, cancellationToken)
            : base.DeadLetterAsync(receiver, message, deadLetterTopic, copy, cancellationToken);

    public override async ValueTask DisposeAsync()
    {
        if (_connection is { } connection)
        {
            // Closing with allowCommandsToComplete sends QUIT and waits for its reply, up to the operation timeout:
            // against a server that did not answer a consumer's close, the connection is closed without it.
            var closing = CloseWaits.BrokerSilent ? null : connection.CloseAsync(allowCommandsToComplete: true);
            if (closing is not null && await WaitOnCloseAsync(closing, "the connection").ConfigureAwait(false))
            {
                await closing.ConfigureAwait(false);
            }
            else
            {
                await connection.CloseAsync(allowCommandsToComplete: false).ConfigureAwait(false);
            }

            await connection.DisposeAsync().ConfigureAwait(false);
        }

        await base.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>XGROUP CREATE key group start MKSTREAM; an existing group keeps its position.</summary>
    internal async Task CreateGroupAsync(string topic, string group, string start)
    {
        try
        {
            await Database.StreamCreateConsumerGroupAsync(topic, group, start, createStream: true).ConfigureAwait(false);
        }
        catch (RedisServerException ex) when (ex.Message.StartsWith("BUSYGROUP", StringComparison.Ordinal))
        {
        }
        catch (RedisServerException ex) when (ex.Message.StartsWith("WRONGTYPE", StringComparison.Ordinal))
        {
            throw new BusException($"redis: key '{topic}' exists and is not a stream.", BusFailureReason.InvalidTopic, RedisTransportFactory.BackendName, topic, innerException: ex);
        }
    }
}
