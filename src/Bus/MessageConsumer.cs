using System.Runtime.CompilerServices;
using System.Threading.Channels;
using Bus.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging;

namespace Bus;

/// <summary>
/// A pull consumer: one member of a consumer group, established when
/// <see cref="IMessageBus.CreateConsumerAsync"/> returns. At most <see cref="SubscriptionOptions.MaxInFlight"/>
/// received messages are unsettled at once; receiving waits for a settlement beyond that. Disposing releases every
/// unsettled message back to the group.
/// </summary>
public sealed partial class MessageConsumer : IAsyncDisposable, IMessageSettler
{
    private readonly MessageBus _bus;
    private readonly TransportReceiver _receiver;
    private readonly ChannelReader<ReceivedMessage> _deliveries;
    private readonly InFlightSlots _slots;
    // One read of the transport's channel at a time, so that transports can create it with SingleReader = true: a
    // channel that may have several readers takes its lock on every write and every read, which the publishing and
    // the consuming thread then contend for once per message each.
    private readonly InFlightSlots _reader = new(1);
    private readonly SubscriptionOptions _options;
    private readonly ILogger _logger;
    private readonly System.Diagnostics.TagList _tags;
    private int _disposed;

    internal MessageConsumer(MessageBus bus, TransportReceiver receiver, string topic, string deadLetterTopic, SubscriptionOptions options, ILogger logger)
    {
        _bus = bus;
        _receiver = receiver;
        _deliveries = receiver.Deliveries;
        _options = options;
        _logger = logger;
        _slots = new InFlightSlots(options.MaxInFlight);
        _tags = BusTelemetry.Tags(bus.Backend, topic);
        Topic = topic;
        DeadLetterTopic = deadLetterTopic;
    }

    /// <summary>The topic.</summary>
    public string Topic { get; }

    /// <summary>The group.</summary>
    public string Group => _options.Group;

    /// <summary>Where this consumer's dead letters go.</summary>
    public string DeadLetterTopic { get; }

    /// <summary>The options in force (a private copy: do not modify).</summary>
    internal SubscriptionOptions Options => _options;

    /// <summary>Messages received and not yet settled.</summary>
    public int InFlight => _slots.InUse;

    /// <summary>Waits for the next message.</summary>
    /// <param name="cancellationToken">Stops waiting.</param>
    /// <exception cref="OperationCanceledException">The token fired.</exception>
    /// <exception cref="ObjectDisposedException">The consumer was disposed.</exception>
    /// <exception cref="BusException">The backend failed (for example the connection was lost for good).</exception>
    public async ValueTask<ReceivedMessage> ReceiveAsync(CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            await _slots.TakeAsync(cancellationToken).ConfigureAwait(false);
            ReceivedMessage message;
            try
            {
                await _reader.TakeAsync(cancellationToken).ConfigureAwait(false);
                try
                {
                    if (!_deliveries.TryRead(out message!))
                    {
                        message = await _deliveries.ReadAsync(cancellationToken).ConfigureAwait(false);
                    }
                }
                finally
                {
                    _reader.Return();
                }
            }
            catch (ChannelClosedException closed)
            {
                _slots.Return();
                throw ReceiverEnded(closed);
            }
            catch
            {
                _slots.Return();
                throw;
            }

            if (await AdmitAsync(message, cancellationToken).ConfigureAwait(false))
            {
                return message;
            }
        }
    }

    /// <summary>Takes a message if one is ready and a slot is free, without waiting.</summary>
    /// <param name="message">The message, when the result is <see langword="true"/>.</param>
    public bool TryReceive([System.Diagnostics.CodeAnalysis.MaybeNullWhen(false)] out ReceivedMessage message)
    {
        while (Volatile.Read(ref _disposed) == 0 && _slots.TryTake())
        {
            if (TryReadOne() is not { } delivery)
            {
                // Nothing buffered, or another caller is reading (and so takes the next message).
                _slots.Return();
                break;
            }

            var admitted = AdmitAsync(delivery, CancellationToken.None);
            if (admitted.IsCompletedSuccessfully)
            {
                if (admitted.Result)
                {
                    message = delivery;
                    return true;
                }

                continue;
            }

            // Dead-lettering an over-delivered message went asynchronous: let it finish in the background.
            _ = admitted.AsTask();
        }

        message = null;
        return false;
    }

    private ReceivedMessage? TryReadOne()
    {
        if (!_reader.TryTake())
        {
            return null;
        }

        var read = _deliveries.TryRead(out var message);
        _reader.Return();
        return read ? message : null;
    }

    /// <summary>
    /// Starts the consumer span <c>process &lt;topic&gt;</c> for handling <paramref name="message"/> yourself, as a
    /// subscription does around each handler: a child of the trace context the message carries (else of the current
    /// activity), with OpenTelemetry's messaging attributes. It becomes the current activity, so what the handling
    /// publishes continues the trace: dispose it when done, in the same async method (or the same synchronous block).
    /// </summary>
    /// <param name="message">A message this consumer received.</param>
    /// <returns>The span, or <see langword="null"/> when nobody listens to the source <c>Bus</c>.</returns>
    public System.Diagnostics.Activity? StartProcessActivity(ReceivedMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return TraceContext.StartProcess(_bus.Backend, Topic, Group, message);
    }

    /// <summary>Every message, until cancelled or disposed. Settle each one (or let the consumer's options cap the backlog).</summary>
    /// <param name="cancellationToken">Ends the enumeration.</param>
    public async IAsyncEnumerable<ReceivedMessage> ReadAllAsync([EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (true)
        {
            ReceivedMessage message;
            try
            {
                message = await ReceiveAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                yield break;
            }
            catch (ObjectDisposedException)
            {
                yield break;
            }

            yield return message;
        }
    }

    /// <summary>
    /// Stops receiving and releases every unsettled message (handed out or buffered) back to the group.
    /// Settling a message after this is ignored: it has been released for redelivery.
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        try
        {
            await _receiver.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.ReceiverDisposeFailed(_logger, _bus.Backend, Topic, Group, ex);
        }
        finally
        {
            _bus.Forget(this);
        }
    }

    ValueTask IMessageSettler.AckAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return Ignored(message);
        }

        ValueTask pending;
        try
        {
            pending = _receiver.AckAsync(message, cancellationToken);
        }
        catch (Exception ex)
        {
            return SettlementFailed(message, "ack", ex);
        }

        if (pending.IsCompletedSuccessfully)
        {
            pending.GetAwaiter().GetResult();
            Settled(message);
            if (BusTelemetry.Acked.Enabled)
            {
                BusTelemetry.Acked.Add(1, _tags);
            }

            return default;
        }

        return AwaitSettlementAsync(pending, message, "ack");
    }

    ValueTask IMessageSettler.NackAsync(ReceivedMessage message, TimeSpan delay, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return Ignored(message);
        }

        ValueTask pending;
        try
        {
            pending = _receiver.NackAsync(message, delay, cancellationToken);
        }
        catch (Exception ex)
        {
            return SettlementFailed(message, "nack", ex);
        }

        return AwaitSettlementAsync(pending, message, "nack");
    }

    ValueTask IMessageSettler.DeadLetterAsync(ReceivedMessage message, string reason, string? description, CancellationToken cancellationToken)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return Ignored(message);
        }

        var copy = DeadLetterCopy.Create(message, Group, reason, description);
        ValueTask pending;
        try
        {
            pending = _bus.Transport.DeadLetterAsync(_receiver, message, DeadLetterTopic, copy, cancellationToken);
        }
        catch (Exception ex)
        {
            return SettlementFailed(message, "dead-letter", ex);
        }

        return AwaitSettlementAsync(pending, message, "dead-letter", reason);
    }

    /// <summary>
    /// Awaits a settlement and counts it (metrics, and the dead-letter log line) only once the backend has done it: a
    /// failed nack or dead-letter used to be counted as done.
    /// </summary>
    private async ValueTask AwaitSettlementAsync(ValueTask pending, ReceivedMessage message, string operation, string? deadLetterReason = null)
    {
        try
        {
            await pending.ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            await SettlementFailed(message, operation, ex).ConfigureAwait(false);
            return;
        }

        var deliveryCount = message.DeliveryCount;
        Settled(message);
        switch (operation)
        {
            case "ack":
                BusTelemetry.Acked.Add(1, _tags);
                break;
            case "nack":
                BusTelemetry.Nacked.Add(1, _tags);
                break;
            default:
                BusTelemetry.DeadLettered.Add(1, _tags);
                Log.DeadLettered(_logger, _bus.Backend, Topic, Group, message.MessageId, deliveryCount, DeadLetterTopic, deadLetterReason ?? "");
                break;
        }
    }

    private ValueTask SettlementFailed(ReceivedMessage message, string operation, Exception ex)
    {
        // The broker still owns the message (it will redeliver it), so free the slot and let the caller know.
        Settled(message);
        if (ex is OperationCanceledException)
        {
            return ValueTask.FromException(ex);
        }

        var error = ex as BusException ?? new BusException(
            $"{_bus.Backend}: {operation} of message {message.MessageId} on topic '{Topic}' (group '{Group}') failed: {ex.Message}",
            BusFailureReason.BrokerError, _bus.Backend, Topic, isTransient: true, ex);
        return ValueTask.FromException(error);
    }

    private ValueTask Ignored(ReceivedMessage message)
    {
        Log.SettledAfterDispose(_logger, _bus.Backend, Topic, Group, message.MessageId);
        return default;
    }

    private void Settled(ReceivedMessage message)
    {
        message.Owner = null;
        _slots.Return();
    }

    /// <summary>Hands a delivery to the caller, or dead-letters it first when it is past its delivery limit.</summary>
    private async ValueTask<bool> AdmitAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        message.Owner = this;
        if (BusTelemetry.Received.Enabled)
        {
            BusTelemetry.Received.Add(1, _tags);
        }

        if (message.DeliveryCount <= _options.MaxDeliveries)
        {
            return true;
        }

        // A consumer died (or never settled) on every earlier delivery: the handler cannot be trusted with it again.
        try
        {
            await message.DeadLetterAsync(
                "delivery limit exceeded",
                $"delivered {message.DeliveryCount} times without being settled; the limit is {_options.MaxDeliveries}",
                cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            Log.DeadLetterFailed(_logger, _bus.Backend, Topic, Group, message.MessageId, ex);
        }

        return false;
    }

    private Exception ReceiverEnded(ChannelClosedException closed)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return new ObjectDisposedException(nameof(MessageConsumer));
        }

        var cause = closed.InnerException ?? closed;
        return cause as BusException ?? new BusException(
            $"{_bus.Backend}: the consumer for topic '{Topic}' (group '{Group}') stopped: {cause.Message}",
            BusFailureReason.Connection, _bus.Backend, Topic, isTransient: true, cause);
    }
}
