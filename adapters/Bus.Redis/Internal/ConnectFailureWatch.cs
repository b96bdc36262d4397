using Microsoft.Extensions.Logging;
using StackExchange.Redis;

namespace Bus.Redis.Internal;

/// <summary>
/// The logger StackExchange.Redis is given while it connects. It notices a refused handshake (a password or a server
/// certificate not accepted) as soon as the client logs it, and passes the client's log on at Debug level.
/// </summary>
/// <remarks>
/// Why: ConnectionMultiplexer.ConnectAsync waits for a server's "connected" signal, which it starts waiting for only
/// after opening the sockets. When the handshake is refused before that wait begins (seen on a loaded machine in about
/// one connect of a hundred), nothing completes it, and the refusal surfaces only after the whole ConnectTimeout, as
/// an error that no longer says which failure it was. A refused handshake cannot succeed on the next attempt, so the
/// first one logged is the answer.
/// </remarks>
internal sealed class ConnectFailureWatch(ILogger clientLog) : ILoggerFactory, ILogger
{
    private readonly TaskCompletionSource<RedisConnectionException> _refused = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes with the client's exception when a connection's handshake is refused; never faults.</summary>
    public Task<RedisConnectionException> Refused => _refused.Task;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (exception is RedisConnectionException { FailureType: ConnectionFailureType.AuthenticationFailure } refused)
        {
            _refused.TrySetResult(refused);
        }

        // The client narrates every connect at Information; that is detail for whoever debugs a connection.
        if (clientLog.IsEnabled(LogLevel.Debug))
        {
            clientLog.Log(LogLevel.Debug, eventId, state, exception, formatter);
        }
    }

    public bool IsEnabled(LogLevel logLevel) => true;

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public ILogger CreateLogger(string categoryName) => this;

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }
}
