using System.Globalization;
using Bus.Transport;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Bus.RabbitMq.Internal;

/// <summary>
/// Publishing: one channel with publisher confirmations and confirmation tracking, so each publish completes when the
/// broker has confirmed it. Publishes are not serialised by the caller: a batch starts every publish and then awaits
/// them all, so confirms are pipelined; one channel keeps them in call order (per-key order for batches).
/// No <c>mandatory</c> flag: a topic without groups drops what is published to it, as in the reference backend.
/// </summary>
internal sealed partial class RabbitMqTransport
{
    private const long MaxDelayMs = uint.MaxValue;
    private readonly SemaphoreSlim _publishChannelLock = new(1, 1);
    private volatile IChannel? _publishChannel;

    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        if (message.Delay is { } delay && delay > TimeSpan.Zero)
        {
            return new ValueTask(PublishDelayedAsync(topic, message, delay, cancellationToken));
        }

        if (_publishChannel is not { IsOpen: true } channel)
        {
            return PublishOnNewChannelAsync(topic, message, cancellationToken);
        }

        ValueTask pending;
        try
        {
            pending = channel.BasicPublishAsync(topic, MessageMapping.RoutingKey(message), mandatory: false, MessageMapping.ToProperties(message), message.Body, cancellationToken);
        }
        catch (Exception ex)
        {
            return ValueTask.FromException(Translate(ex, message, topic, cancellationToken));
        }

        if (pending.IsCompletedSuccessfully)
        {
            pending.GetAwaiter().GetResult(); // consumes it, should the client ever pool its sources
            return default;
        }

        return AwaitConfirmAsync(pending, message, topic, cancellationToken);
    }

    private async ValueTask AwaitConfirmAsync(ValueTask pending, OutgoingMessage message, string topic, CancellationToken cancellationToken)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(Translate(ex, message, topic, cancellationToken));
        }
    }

    private async ValueTask PublishOnNewChannelAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        var channel = await GetPublishChannelAsync(cancellationToken).ConfigureAwait(false);
        await SendAsync(channel, topic, MessageMapping.RoutingKey(message), message, topic, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Starts every publish on one channel, in order, before awaiting any: the channel keeps them in that order (so
    /// per-key order holds) and their confirms are pipelined. One state machine awaits them all (not one per message);
    /// every one is awaited even after a failure (each confirmed one marked), and the first failure is thrown.
    /// </summary>
    public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        var channel = _publishChannel is { IsOpen: true } open ? open : await GetPublishChannelAsync(cancellationToken).ConfigureAwait(false);
        var pending = new ValueTask[messages.Count];
        Exception? first = null;
        for (var i = 0; i < pending.Length; i++)
        {
            var message = messages[i];
            try
            {
                pending[i] = message.Delay is { } delay && delay > TimeSpan.Zero
                    ? new ValueTask(PublishDelayedAsync(topic, message, delay, cancellationToken))
                    : channel.BasicPublishAsync(topic, MessageMapping.RoutingKey(message), mandatory: false, MessageMapping.ToProperties(message), message.Body, cancellationToken);
            }
            catch (Exception ex)
            {
                pending[i] = ValueTask.FromException(Translate(ex, message, topic, cancellationToken)); // not confirmed, not started
            }
        }

        for (var i = 0; i < pending.Length; i++)
        {
            try
            {
                await pending[i].ConfigureAwait(false);
                confirmations.Confirm(i);
            }
            catch (Exception ex)
            {
                first ??= Translate(ex, messages[i], topic, cancellationToken);
            }
        }

        if (first is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }
    }

    private async Task SendAsync(IChannel channel, string exchange, string routingKey, OutgoingMessage message, string topic, CancellationToken cancellationToken)
    {
        try
        {
            await channel.BasicPublishAsync(exchange, routingKey, mandatory: false, MessageMapping.ToProperties(message), message.Body, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(Translate(ex, message, topic, cancellationToken));
        }
    }

    /// <summary>What a failed publish throws: a nack, a vanished exchange and other failures named; cancellation as it is.</summary>
    private Exception Translate(Exception ex, OutgoingMessage message, string topic, CancellationToken cancellationToken) => ex switch
    {
        PublishException => new BusException($"rabbitmq: the broker did not confirm message {message.MessageId} on topic '{topic}' (nack)", BusFailureReason.PublishNotConfirmed, RabbitMqEndpoint.BackendName, topic, isTransient: true, ex),
        OperationInterruptedException { ShutdownReason.ReplyCode: 404 } => new BusException($"rabbitmq: publish to topic '{topic}' failed: its exchange does not exist (deleted behind the bus's back?)", BusFailureReason.BrokerError, RabbitMqEndpoint.BackendName, topic, isTransient: false, ex),
        BusException => ex,
        OperationCanceledException when cancellationToken.IsCancellationRequested => ex,
        _ => Failure(ex, "publish", topic),
    };

    /// <summary>
    /// Emulated delay: the message waits in <c>&lt;topic&gt;:bus-delay-&lt;ms&gt;</c>, a classic queue whose message TTL is the
    /// delay and whose dead-letter exchange is the topic, so it reaches every group when it expires. The queue is
    /// redeclared on each delayed publish, which restarts its x-expires clock, so it outlives its last message.
    /// </summary>
    private async Task PublishDelayedAsync(string topic, OutgoingMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        var ms = (long)Math.Ceiling(delay.TotalMilliseconds);
        if (ms > MaxDelayMs)
        {
            throw new BusException($"rabbitmq: a delay of {delay} on topic '{topic}' exceeds the longest message TTL RabbitMQ accepts ({MaxDelayMs} ms)", BusFailureReason.NotSupported, RabbitMqEndpoint.BackendName, topic);
        }

        var queue = string.Create(CultureInfo.InvariantCulture, $"{topic}:bus-delay-{ms}");
        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["x-queue-type"] = "classic",
            ["x-message-ttl"] = ms,
            ["x-dead-letter-exchange"] = topic,
            ["x-expires"] = ms + 600_000,
        };
        await WithChannelAsync(async channel =>
        {
            await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
            return true;
        }, "declare the delay queue", topic, cancellationToken).ConfigureAwait(false);
        var publisher = _publishChannel is { IsOpen: true } open ? open : await GetPublishChannelAsync(cancellationToken).ConfigureAwait(false);
        await SendAsync(publisher, "", queue, message, topic, cancellationToken).ConfigureAwait(false);
    }

    private async ValueTask<IChannel> GetPublishChannelAsync(CancellationToken cancellationToken)
    {
        var connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        await _publishChannelLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_publishChannel is { } current)
            {
                if (current.IsOpen)
                {
                    return current;
                }

                if (!connection.IsOpen)
                {
                    // The connection is recovering; the channel recovers with it. Publishing now fails fast (transient).
                    return current;
                }

                Log.PublishChannelClosed(_logger, current.CloseReason is { } reason ? $"{reason.ReplyCode} {reason.ReplyText}" : "unknown");
                current.Dispose();
                _publishChannel = null;
            }

            try
            {
                _publishChannel = await connection.CreateChannelAsync(
                    new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true),
                    cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw Failure(ex, "open the publish channel", null);
            }

            return _publishChannel;
        }
        finally
        {
            _publishChannelLock.Release();
        }
    }

    private async Task DisposePublishChannelAsync()
    {
        if (_publishChannel is { } channel)
        {
            _publishChannel = null;
            await _closer.CloseAsync(channel, null, "the publish channel").ConfigureAwait(false);
        }
    }
}
