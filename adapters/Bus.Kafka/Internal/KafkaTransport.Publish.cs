using Bus.Transport;
using Confluent.Kafka;

namespace Bus.Kafka.Internal;

internal sealed partial class KafkaTransport
{
    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        var confirmation = new Confirmation(this, topic, 1);
        var producer = Producer;
        return TryProduce(producer, topic, message, confirmation, confirmation.OnReport)
            ? new(confirmation.Task.WaitAsync(cancellationToken))
            : new(PublishWhenRoomAsync(producer, topic, [message], 0, confirmation, null, cancellationToken));
    }

    /// <summary>
    /// Starts every produce before awaiting any: librdkafka batches them and confirms each by delivery report. One
    /// confirmation serves the whole batch; each record's report handler knows its index, to mark it confirmed (the
    /// reports carry the outcome only, not the record).
    /// </summary>
    public override ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        var producer = Producer;
        var confirmation = new Confirmation(this, topic, messages.Count);
        for (var i = 0; i < messages.Count; i++)
        {
            if (!TryProduce(producer, topic, messages[i], confirmation, ReportFor(confirmation, confirmations, i)))
            {
                return new(PublishWhenRoomAsync(producer, topic, messages, i, confirmation, confirmations, cancellationToken));
            }
        }

        return new(confirmation.Task.WaitAsync(cancellationToken));
    }

    /// <summary>Where a record's delivery report goes: straight to the confirmation, or for a batch through a handler that knows its index.</summary>
    private static Action<DeliveryReport<byte[]?, byte[]>> ReportFor(Confirmation confirmation, BatchConfirmations? confirmations, int index)
        => confirmations is null ? confirmation.OnReport : new RecordReport(confirmation, confirmations, index).OnReport;

    /// <summary>
    /// Produces one record; its delivery report (acks=all: written to every in-sync replica) goes to <paramref name="onReport"/>.
    /// False when librdkafka's local queue is full (queue.buffering.max.messages or .kbytes): nothing was produced.
    /// </summary>
    private static bool TryProduce(IProducer<byte[]?, byte[]> producer, string topic, OutgoingMessage message, Confirmation confirmation, Action<DeliveryReport<byte[]?, byte[]>> onReport)
    {
        try
        {
            producer.Produce(topic, KafkaMessages.ToRecord(message), onReport);
        }
        catch (ProduceException<byte[]?, byte[]> ex) when (ex.Error.Code == ErrorCode.Local_QueueFull)
        {
            return false;
        }
        catch (ProduceException<byte[]?, byte[]> ex)
        {
            confirmation.Failed(ex.Error, ex);
        }
        catch (KafkaException ex)
        {
            confirmation.Failed(ex.Error, ex);
        }

        return true;
    }

    /// <summary>
    /// Produces <paramref name="messages"/> from <paramref name="from"/> on, once librdkafka's local queue has room: as
    /// the client advises, a producer that finds the queue full waits while delivery frees it, instead of failing what
    /// the application asked to publish (a batch larger than the queue, 100,000 records by default, or many publishes
    /// at once). It waits at most the operation timeout for room for each record; a record that finds none by then
    /// fails with the queue's error, and so do the ones after it, which are not produced (nothing is reordered). Once a
    /// record of the call has failed (a frozen cluster: the records produced before time out, which also frees room),
    /// it produces no more: the call has failed, and producing the rest would only make it wait another timeout for
    /// each queueful of them.
    /// </summary>
    private async Task PublishWhenRoomAsync(IProducer<byte[]?, byte[]> producer, string topic, IReadOnlyList<OutgoingMessage> messages, int from, Confirmation confirmation, BatchConfirmations? confirmations, CancellationToken cancellationToken)
    {
        for (var i = from; i < messages.Count; i++)
        {
            if (!await ProduceWhenRoomAsync(producer, topic, messages[i], confirmation, ReportFor(confirmation, confirmations, i), cancellationToken).ConfigureAwait(false))
            {
                // The first failure is the one the call reports: a record that found no room, or one produced before.
                var full = new Error(ErrorCode.Local_QueueFull);
                for (var rest = i; rest < messages.Count; rest++)
                {
                    confirmation.Failed(full, null);
                }

                break;
            }
        }

        await confirmation.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Produces one record once the local queue has room; false, without producing it, when it found none within the
    /// operation timeout or a record of the same call failed meanwhile.
    /// </summary>
    private async Task<bool> ProduceWhenRoomAsync(IProducer<byte[]?, byte[]> producer, string topic, OutgoingMessage message, Confirmation confirmation, Action<DeliveryReport<byte[]?, byte[]>> onReport, CancellationToken cancellationToken)
    {
        var waitingSince = Environment.TickCount64;
        while (!confirmation.HasFailed)
        {
            if (TryProduce(producer, topic, message, confirmation, onReport))
            {
                return true;
            }

            if (Environment.TickCount64 - waitingSince >= (long)_context.Options.OperationTimeout.TotalMilliseconds)
            {
                return false;
            }

            await Task.Delay(1, cancellationToken).ConfigureAwait(false);
        }

        return false;
    }

    /// <summary>A batch record's report: marks the record confirmed (before it counts, so before the batch can complete) and counts it.</summary>
    private sealed class RecordReport(Confirmation confirmation, BatchConfirmations confirmations, int index)
    {
        public void OnReport(DeliveryReport<byte[]?, byte[]> report)
        {
            if (!report.Error.IsError)
            {
                confirmations.Confirm(index);
            }

            confirmation.OnReport(report);
        }
    }

    /// <summary>
    /// Completes when every record of a publish call has its delivery report: with the first failure if any failed
    /// (a batch is confirmed as a whole, as the contract says), else successfully.
    /// </summary>
    private sealed class Confirmation : TaskCompletionSource
    {
        private readonly KafkaTransport _transport;
        private readonly string _topic;
        private int _remaining;
        private Exception? _failure;

        public Confirmation(KafkaTransport transport, string topic, int count)
            : base(TaskCreationOptions.RunContinuationsAsynchronously)
        {
            _transport = transport;
            _topic = topic;
            _remaining = count;
            OnReport = report =>
            {
                if (report.Error.IsError)
                {
                    Failed(report.Error, null);
                }
                else
                {
                    Counted();
                }
            };
        }

        public Action<DeliveryReport<byte[]?, byte[]>> OnReport { get; }

        /// <summary>True once a record of the call has failed, though others may still await their reports.</summary>
        public bool HasFailed => Volatile.Read(ref _failure) is not null;

        public void Failed(Error error, Exception? inner)
        {
            Interlocked.CompareExchange(ref _failure, _transport.PublishFailed(_topic, error, inner), null);
            Counted();
        }

        private void Counted()
        {
            if (Interlocked.Decrement(ref _remaining) != 0)
            {
                return;
            }

            if (Volatile.Read(ref _failure) is { } failure)
            {
                TrySetException(failure);
            }
            else
            {
                TrySetResult();
            }
        }
    }

    private BusException PublishFailed(string topic, Error error, Exception? inner)
    {
        var reason = error.Code switch
        {
            ErrorCode.MsgSizeTooLarge or ErrorCode.InvalidMsgSize => BusFailureReason.MessageTooLarge,
            // Local_QueueFull reaches here only once a record found no room within the operation timeout.
            ErrorCode.Local_MsgTimedOut or ErrorCode.RequestTimedOut or ErrorCode.Local_QueueFull => BusFailureReason.Timeout,
            ErrorCode.TopicAuthorizationFailed or ErrorCode.ClusterAuthorizationFailed or ErrorCode.SaslAuthenticationFailed => BusFailureReason.Unauthorized,
            ErrorCode.Local_UnknownTopic or ErrorCode.UnknownTopicOrPart or ErrorCode.TopicException => BusFailureReason.InvalidTopic,
            ErrorCode.Local_AllBrokersDown or ErrorCode.Local_Transport => BusFailureReason.Connection,
            _ => BusFailureReason.PublishNotConfirmed,
        };
        return new BusException(
            $"kafka: publishing to topic '{topic}' was not confirmed: {error.Code} ({error.Reason})",
            reason,
            Backend,
            topic,
            isTransient: !error.IsFatal && reason is not (BusFailureReason.MessageTooLarge or BusFailureReason.InvalidTopic or BusFailureReason.Unauthorized),
            inner ?? new KafkaException(error));
    }
}
