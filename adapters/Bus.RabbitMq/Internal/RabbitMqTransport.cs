using System.Collections.Concurrent;
using System.Text;
using Bus.Transport;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;
using RabbitMQ.Client.Exceptions;

namespace Bus.RabbitMq.Internal;

/// <summary>
/// One AMQP connection (automatic recovery on) per bus: a publisher channel with confirmations, a short-lived channel
/// per topology operation (a failed declaration closes its channel), and one channel per receiver.
/// </summary>
internal sealed partial class RabbitMqTransport : MessageTransport
{
    private readonly RabbitMqEndpoint _endpoint;
    private readonly TransportContext _context;
    private readonly ILogger _logger;
    private readonly SemaphoreSlim _connectLock = new(1, 1);
    private readonly ConcurrentDictionary<string, TopicOptions> _topics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _deadLetterTopics = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> _privateTopics = new(StringComparer.Ordinal);
    private IConnection? _connection;
    private volatile bool _disposed;

    public RabbitMqTransport(RabbitMqEndpoint endpoint, BackendCapabilities capabilities, TransportContext context)
    {
        _endpoint = endpoint;
        _context = context;
        Capabilities = capabilities;
        _logger = context.LoggerFactory.CreateLogger("Bus.RabbitMq");
        // Abandoned closes do not wait at all (see ChannelCloser), hence no wait once the broker is silent.
        _closer = new ChannelCloser(new CloseWaits(context.CloseTimeout, TimeSpan.Zero), _logger);
    }

    private readonly ChannelCloser _closer;

    /// <summary>
    /// Redeliveries counted by the adapter where the queue does not count them (classic queues only flag one), by
    /// message id: exact within this bus.
    /// </summary>
    private readonly DeliveryCounts<string> _redeliveries = new();

    public override BackendCapabilities Capabilities { get; }

    public override string? ValidateTopicName(string topic)
    {
        if (TopicNames.ValidateConservative(topic) is { } why)
        {
            return why;
        }

        return topic.StartsWith("amq.", StringComparison.OrdinalIgnoreCase) ? "names starting with 'amq.' are reserved by RabbitMQ" : null;
    }

    /// <summary>AMQP's limits on properties: see <see cref="MessageMapping.ExplainUnsendable"/>.</summary>
    public override string? ValidateMessage(OutgoingMessage message)
        => MessageMapping.ExplainUnsendable(message, _connection is { FrameMax: > 0 } connection ? connection.FrameMax : DefaultFrameMax);

    /// <summary>RabbitMQ's default frame_max, used before the connection has negotiated one.</summary>
    private const uint DefaultFrameMax = 131_072;

    public override async ValueTask ConnectAsync(CancellationToken cancellationToken)
        => await GetConnectionAsync(cancellationToken).ConfigureAwait(false);

    public override async ValueTask DisposeAsync()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        var connection = _connection;
        if (connection is not null)
        {
            await DisposePublishChannelAsync().ConfigureAwait(false);
            // RabbitMQ.Client waits for the broker in places no timeout of its own reaches (disposing the connection
            // waits its continuation timeout, 20 s, on a silent broker): past the budget the close goes on in the
            // background and ends when the client gives up on the socket.
            var closing = CloseConnectionAsync(connection);
            await closing.WaitAsync(_closer.Waits.Budget).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (!closing.IsCompleted)
            {
                Log.ConnectionCloseLeftRunning(_logger, _endpoint.RedactedUrl, _closer.Waits.Budget);
            }
        }

        _connectLock.Dispose();
        await base.DisposeAsync().ConfigureAwait(false);
    }

    /// <summary>Closes the connection (without waiting for a broker that did not answer a channel close) and disposes it; never throws.</summary>
    private async Task CloseConnectionAsync(IConnection connection)
    {
        try
        {
            if (_closer.Waits.BrokerSilent)
            {
                await connection.AbortAsync(_closer.Waits.Budget).ConfigureAwait(false);
            }
            else
            {
                await connection.CloseAsync(_closer.Waits.Budget).ConfigureAwait(false);
            }
        }
        catch (Exception)
        {
            // Closing a connection that is already gone: nothing to release.
        }

        try
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception)
        {
            // As above.
        }
    }

    /// <summary>The queue of <paramref name="group"/> on <paramref name="topic"/>.</summary>
    internal static string QueueName(string topic, string group) => topic + ":" + group;

    private async ValueTask<IConnection> GetConnectionAsync(CancellationToken cancellationToken)
    {
        if (_connection is { } existing)
        {
            return existing;
        }

        ObjectDisposedException.ThrowIf(_disposed, this);
        await _connectLock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_connection is { } raced)
            {
                return raced;
            }

            var factory = _endpoint.CreateConnectionFactory(_context.Options.ConnectTimeout, "Bus.RabbitMq");
            IConnection connection;
            try
            {
                connection = await factory.CreateConnectionAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                throw ConnectFailed(ex);
            }

            connection.ConnectionShutdownAsync += OnConnectionShutdownAsync;
            connection.RecoverySucceededAsync += OnRecoverySucceededAsync;
            connection.ConnectionRecoveryErrorAsync += OnRecoveryErrorAsync;
            _connection = connection;
            Log.Connected(_logger, _endpoint.RedactedUrl, _endpoint.VirtualHost);
            return connection;
        }
        finally
        {
            _connectLock.Release();
        }
    }

    private BusException ConnectFailed(Exception ex)
    {
        var (reason, why) = ex switch
        {
            AuthenticationFailureException => (BusFailureReason.Unauthorized, "the broker refused the credentials"),
            BrokerUnreachableException { InnerException: AuthenticationFailureException } => (BusFailureReason.Unauthorized, "the broker refused the credentials"),
            BrokerUnreachableException { InnerException: { } inner } => (BusFailureReason.Connection, $"{ex.Message} ({Describe(inner)})"),
            _ => (BusFailureReason.Connection, Describe(ex)),
        };
        // A broker certificate this client does not accept stays so until someone changes a certificate or the
        // settings (tls-ca, tls-host): retrying is no use.
        var transient = reason == BusFailureReason.Connection && !HasCause<System.Security.Authentication.AuthenticationException>(ex);
        return new BusException($"rabbitmq: cannot connect to {_endpoint.RedactedUrl}: {why}", reason, RabbitMqEndpoint.BackendName, null, transient, Scrub(ex));
    }

    private static bool HasCause<T>(Exception? ex)
        where T : Exception => ex switch
        {
            null => false,
            T => true,
            AggregateException aggregate => aggregate.InnerExceptions.Any(HasCause<T>),
            _ => HasCause<T>(ex.InnerException),
        };

    /// <summary>The exception's message with the password removed, should a client library ever echo it.</summary>
    private string Describe(Exception ex)
        => string.IsNullOrEmpty(_endpoint.Password) ? ex.Message : ex.Message.Replace(_endpoint.Password, "***", StringComparison.Ordinal);

    private Exception Scrub(Exception ex)
    {
        if (string.IsNullOrEmpty(_endpoint.Password) || !ex.ToString().Contains(_endpoint.Password, StringComparison.Ordinal))
        {
            return ex;
        }

        return new InvalidOperationException($"{ex.GetType().FullName}: {Describe(ex)}");
    }

    private Task OnConnectionShutdownAsync(object sender, ShutdownEventArgs reason)
    {
        if (!_disposed && reason.Initiator != ShutdownInitiator.Application)
        {
            Log.ConnectionLost(_logger, _endpoint.RedactedUrl, $"{reason.ReplyCode} {reason.ReplyText}");
        }

        return Task.CompletedTask;
    }

    private Task OnRecoverySucceededAsync(object sender, AsyncEventArgs args)
    {
        _closer.Waits.Answered();
        Log.ConnectionRecovered(_logger, _endpoint.RedactedUrl);
        return Task.CompletedTask;
    }

    private Task OnRecoveryErrorAsync(object sender, ConnectionRecoveryErrorEventArgs args)
    {
        Log.RecoveryFailed(_logger, _endpoint.RedactedUrl, args.Exception);
        return Task.CompletedTask;
    }

    /// <summary>Maps a client exception to a <see cref="BusException"/> naming the topic.</summary>
    private BusException Failure(Exception ex, string operation, string? topic) => ex switch
    {
        BusException bus => bus,
        OperationInterruptedException { ShutdownReason: { } reason } => new BusException(
            $"rabbitmq: {operation}{OnTopic(topic)} failed: the broker closed the channel ({reason.ReplyCode} {reason.ReplyText})",
            reason.ReplyCode switch
            {
                403 => BusFailureReason.Unauthorized,
                406 => BusFailureReason.TopicConflict,
                _ => BusFailureReason.BrokerError,
            },
            RabbitMqEndpoint.BackendName, topic, reason.ReplyCode is not (403 or 406), Scrub(ex)),
        AlreadyClosedException or BrokerUnreachableException or ConnectFailureException => new BusException(
            $"rabbitmq: {operation}{OnTopic(topic)} failed: the connection to {_endpoint.RedactedUrl} is closed ({Describe(ex)}); it recovers automatically",
            BusFailureReason.Connection, RabbitMqEndpoint.BackendName, topic, isTransient: true, Scrub(ex)),
        _ => new BusException($"rabbitmq: {operation}{OnTopic(topic)} failed: {Describe(ex)}", BusFailureReason.BrokerError, RabbitMqEndpoint.BackendName, topic, isTransient: true, Scrub(ex)),
    };

    private static string OnTopic(string? topic) => topic is null ? "" : $" on topic '{topic}'";

    private static int Utf8Length(string text) => Encoding.UTF8.GetByteCount(text);
}
