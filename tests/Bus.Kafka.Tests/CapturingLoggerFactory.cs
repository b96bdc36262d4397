using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Bus.Kafka.Tests;

/// <summary>Collects log events (id and text) for assertions.</summary>
internal sealed class CapturingLoggerFactory : ILoggerFactory, ILogger
{
    public ConcurrentQueue<(int Id, LogLevel Level, string Text)> Events { get; } = new();

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
        => Events.Enqueue((eventId.Id, logLevel, formatter(state, exception) + (exception is null ? "" : " " + exception)));
}
