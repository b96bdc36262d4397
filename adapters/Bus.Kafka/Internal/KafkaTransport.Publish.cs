using Bus.Transport;
using Confluent.Kafka;

namespace Bus.Kafka.Internal;

internal sealed partial class KafkaTransport
{
    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        var confirmation = new Confirmation(this, topic, 1);
        Produce(Producer, topic, message, confirmation, confirmation.OnReport);
        return new(confirmation.Task.WaitAsync(cancellationToken));
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
            Produce(producer, topic, messages[i], confirmation, new RecordReport(confirmation, confirmations, i).OnReport);
        }

        return new(confirmation.Task.WaitAsync(cancellationToken));
    }

    /// <summary>Produces one record; its delivery report (acks=all: written to every in-sync replica) goes to <paramref name="onReport"/>.</summary>
    private void Produce(IProducer<byte[]?, byte[]> producer, string topic, OutgoingMessage message, Confirmation confirmation, Action<DeliveryReport<byte[]?, byte[]>> onReport)
    {
        try
        {
            producer.Produce(topic, KafkaMessages.ToRecord(message), onReport);
        }
        catch (ProduceException<byte[]?, byte[]> ex)
        {
            confirmation.Failed(ex.Error, ex);
        }
        catch (KafkaException ex)
        {
            confirmation.Failed(ex.Error, ex);
        }
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
            ErrorCode.Local_MsgTimedOut or ErrorCode.RequestTimedOut => BusFailureReason.Timeout,
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
