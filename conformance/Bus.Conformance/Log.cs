using Microsoft.Extensions.Logging;

namespace Bus.Conformance;

internal static partial class Log
{
    [LoggerMessage(5001, LogLevel.Warning, "conformance: topic {Topic} of case {Case} on {Backend} was not deleted; it stays on the broker")]
    public static partial void TopicNotDeleted(ILogger logger, string topic, string @case, string backend, Exception exception);
}
