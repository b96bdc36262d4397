using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Bus.Internal;

/// <summary>
/// Traces and metrics through System.Diagnostics, so OpenTelemetry picks them up with
/// <c>AddSource("Bus")</c> and <c>AddMeter("Bus")</c>. Instruments are static: creating them is not free.
/// </summary>
internal static class BusTelemetry
{
    public const string Name = "Bus";

    public static readonly ActivitySource Source = new(Name, typeof(BusTelemetry).Assembly.GetName().Version?.ToString());
    public static readonly Meter Meter = new(Name, typeof(BusTelemetry).Assembly.GetName().Version?.ToString());

    public static readonly Counter<long> Published = Meter.CreateCounter<long>("bus.messages.published", "{message}", "Messages confirmed by the backend.");
    public static readonly Counter<long> Received = Meter.CreateCounter<long>("bus.messages.received", "{message}", "Deliveries handed to consumers.");
    public static readonly Counter<long> Acked = Meter.CreateCounter<long>("bus.messages.acked", "{message}", "Deliveries acknowledged.");
    public static readonly Counter<long> Nacked = Meter.CreateCounter<long>("bus.messages.nacked", "{message}", "Deliveries returned for redelivery.");
    public static readonly Counter<long> Retried = Meter.CreateCounter<long>("bus.messages.retried", "{message}", "In-place handler retries.");
    public static readonly Counter<long> DeadLettered = Meter.CreateCounter<long>("bus.messages.dead_lettered", "{message}", "Deliveries moved to a dead-letter topic.");
    public static readonly Histogram<double> HandlerDuration = Meter.CreateHistogram<double>("bus.handler.duration", "ms", "Time spent in message handlers.");

    public static TagList Tags(string backend, string topic) => new() { { "messaging.system", SystemName(backend) }, { "messaging.destination.name", topic } };

    /// <summary>OpenTelemetry's name for the messaging system where it has one (SQS is "aws_sqs"), else the backend's.</summary>
    public static string SystemName(string backend) => backend == "sqs" ? "aws_sqs" : backend;
}
