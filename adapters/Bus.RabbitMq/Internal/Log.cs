using Microsoft.Extensions.Logging;

namespace Bus.RabbitMq.Internal;

/// <summary>RabbitMQ adapter log messages: event ids 2000–2999. No template carries a password (URLs are redacted).</summary>
internal static partial class Log
{
    [LoggerMessage(2001, LogLevel.Information, "rabbitmq: connected to {Url} (vhost {VirtualHost})")]
    public static partial void Connected(ILogger logger, string url, string virtualHost);

    [LoggerMessage(2002, LogLevel.Warning, "rabbitmq: connection to {Url} lost: {Reason}")]
    public static partial void ConnectionLost(ILogger logger, string url, string reason);

    [LoggerMessage(2003, LogLevel.Information, "rabbitmq: connection to {Url} recovered")]
    public static partial void ConnectionRecovered(ILogger logger, string url);

    [LoggerMessage(2005, LogLevel.Warning, "rabbitmq: closing the connection to {Url} took longer than {Budget}; it goes on in the background")]
    public static partial void ConnectionCloseLeftRunning(ILogger logger, string url, TimeSpan budget);

    [LoggerMessage(2004, LogLevel.Warning, "rabbitmq: connection to {Url} failed to recover")]
    public static partial void RecoveryFailed(ILogger logger, string url, Exception exception);

    [LoggerMessage(2010, LogLevel.Debug, "rabbitmq: declared topic {Topic} (exchange and {GroupCount} durable groups)")]
    public static partial void TopicDeclared(ILogger logger, string topic, int groupCount);

    [LoggerMessage(2011, LogLevel.Debug, "rabbitmq: declared queue {Queue} ({QueueType}, single active consumer {SingleActiveConsumer}, delivery limit {DeliveryLimit})")]
    public static partial void QueueDeclared(ILogger logger, string queue, string queueType, bool singleActiveConsumer, int deliveryLimit);

    [LoggerMessage(2012, LogLevel.Debug, "rabbitmq: queue {Queue} exists; used with its own arguments")]
    public static partial void QueueExists(ILogger logger, string queue);

    [LoggerMessage(2020, LogLevel.Debug, "rabbitmq: consumer {ConsumerTag} opened on queue {Queue} (prefetch {Prefetch})")]
    public static partial void ConsumerOpened(ILogger logger, string consumerTag, string queue, int prefetch);

    [LoggerMessage(2021, LogLevel.Debug, "rabbitmq: consumer {ConsumerTag} on queue {Queue} closed; unsettled deliveries return to the queue")]
    public static partial void ConsumerClosed(ILogger logger, string consumerTag, string queue);

    [LoggerMessage(2022, LogLevel.Warning, "rabbitmq: consumer on queue {Queue} was cancelled by the broker")]
    public static partial void ConsumerCancelledByBroker(ILogger logger, string queue);

    [LoggerMessage(2023, LogLevel.Debug, "rabbitmq: settlement of delivery {DeliveryTag} on queue {Queue} ignored: the channel is closed, so the broker has requeued it")]
    public static partial void SettlementIgnored(ILogger logger, ulong deliveryTag, string queue);

    [LoggerMessage(2024, LogLevel.Warning, "rabbitmq: delayed nack of delivery {DeliveryTag} on queue {Queue} failed; the broker requeues it when the channel closes")]
    public static partial void DelayedNackFailed(ILogger logger, ulong deliveryTag, string queue, Exception exception);

    [LoggerMessage(2026, LogLevel.Warning, "rabbitmq: the broker did not answer the close of {What} within {Budget}; later closes on this connection do not wait for it until it recovers")]
    public static partial void BrokerSilentOnClose(ILogger logger, string what, TimeSpan budget);

    [LoggerMessage(2027, LogLevel.Warning, "rabbitmq: closing {What} failed")]
    public static partial void ChannelCloseFailed(ILogger logger, string what, Exception exception);

    [LoggerMessage(2030, LogLevel.Debug, "rabbitmq: publish channel closed ({Reason}); a new one is opened for the next publish")]
    public static partial void PublishChannelClosed(ILogger logger, string reason);
}
