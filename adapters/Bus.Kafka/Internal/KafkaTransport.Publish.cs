using Confluent.Kafka;

namespace Bus.Kafka.Internal;

internal sealed partial class KafkaTransport
{
    public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
        => new(Produce(Producer, topic, message).WaitAsync(cancellationToken));

    /// <summary>Starts every produce before awaiting any: librdkafka batches them and confirms each by delivery report.</summary>
    public override async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, CancellationToken cancellationToken)
    {
        var producer = Producer;
        var pending = new Task[messages.Count];
        for (var i = 0; i < pending.Length; i++)
        {
            pending[i] = Produce(producer, topic, messages[i]);
        }

        await Task.WhenAll(pending).WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Produces one record; the task completes on its delivery report (acks=all: written to every in-sync replica).</summary>
    private Task Produce(IProducer<byte[]?, byte[]> producer, string topic, OutgoingMessage message)
    {
        var confirmed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        try
        {
            producer.Produce(topic, KafkaMessages.ToRecord(message), report =>
            {
                if (report.Error.IsError)
                {
                    confirmed.TrySetException(PublishFailed(topic, report.Error, null));
                }
                else
                {
                    confirmed.TrySetResult();
                }
            });
        }
        catch (ProduceException<byte[]?, byte[]> ex)
        {
            confirmed.TrySetException(PublishFailed(topic, ex.Error, ex));
        }
        catch (KafkaException ex)
        {
            confirmed.TrySetException(PublishFailed(topic, ex.Error, ex));
        }

        return confirmed.Task;
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
