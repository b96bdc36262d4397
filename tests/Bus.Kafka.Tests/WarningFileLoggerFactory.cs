using Microsoft.Extensions.Logging;

namespace Bus.Kafka.Tests;

/// <summary>
/// Appends the buses' warnings and errors to a file, so that a conformance run leaves them in its artifacts: a case
/// that runs slow or out of time is explained there (which step a consumer's close was in, for one), while CI prints
/// only the case's outcome.
/// </summary>
internal sealed class WarningFileLoggerFactory(string path) : ILoggerFactory, ILogger
{
    private readonly object _gate = new();

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public ILogger CreateLogger(string categoryName) => this;

    public void Dispose()
    {
    }

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Warning;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (!IsEnabled(logLevel))
        {
            return;
        }

        var line = $"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {logLevel} {eventId.Id}: {formatter(state, exception)}{(exception is null ? "" : " | " + exception.GetType().Name + ": " + exception.Message)}";
        lock (_gate)
        {
            try
            {
                File.AppendAllText(path, line + Environment.NewLine);
            }
            catch (IOException)
            {
                // A log line is not worth failing a test over.
            }
        }
    }
}
