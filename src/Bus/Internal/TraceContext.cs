using System.Diagnostics;

namespace Bus.Internal;

/// <summary>
/// Spans for publishing and handling (OpenTelemetry's messaging conventions: a producer span "send &lt;topic&gt;" and a
/// consumer span "process &lt;topic&gt;"), and the W3C trace context carried in message headers between them, written and
/// read with <see cref="DistributedContextPropagator.Current"/> as HttpClient and ASP.NET Core do.
/// </summary>
/// <remarks>
/// Nothing is started when nobody listens to the source "Bus". The context is carried whenever there is one (the send
/// span, or the application's current activity, say of the HTTP request that publishes), so a trace that does not
/// record the bus still continues in the handler of a service that does. Headers the application set itself win. The
/// caller's message is not changed: a copy carries the headers, so a message published again under another trace
/// does not keep the first one's context.
/// </remarks>
internal static class TraceContext
{
    /// <summary>Whether anyone listens to the source "Bus" (spans may be started).</summary>
    public static bool IsListenedTo => BusTelemetry.Source.HasListeners();

    /// <summary>
    /// Starts the producer span of a publish (of one message, or a batch of <paramref name="count"/>), or null. Call it
    /// from an async method: the span becomes the current activity.
    /// </summary>
    public static Activity? StartSend(string backend, string topic, OutgoingMessage? single, int count)
    {
        if (!IsListenedTo)
        {
            return null;
        }

        var activity = BusTelemetry.Source.StartActivity("send " + topic, ActivityKind.Producer);
        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.system", BusTelemetry.SystemName(backend));
            activity.SetTag("messaging.destination.name", topic);
            activity.SetTag("messaging.operation.type", "send");
            activity.SetTag("messaging.operation.name", "send");
            if (single is not null)
            {
                activity.SetTag("messaging.message.id", single.MessageId);
                if (single.CorrelationId is { } correlation)
                {
                    activity.SetTag("messaging.message.conversation_id", correlation);
                }
            }
            else
            {
                activity.SetTag("messaging.batch.message_count", count);
            }
        }

        return activity;
    }

    /// <summary>
    /// The message to send: <paramref name="message"/> itself when there is no context to carry or the application set
    /// its own, else a copy whose headers carry the context of <paramref name="context"/>.
    /// </summary>
    public static OutgoingMessage Carry(OutgoingMessage message, Activity? context)
    {
        if (context is null || (message.HeadersOrNull is { } own && own.ContainsKey(BusDefaults.TraceParentHeader)))
        {
            return message;
        }

        var headers = message.HeadersOrNull is { } existing
            ? new Dictionary<string, string>(existing, StringComparer.Ordinal)
            : new Dictionary<string, string>(StringComparer.Ordinal);
        var before = headers.Count;
        DistributedContextPropagator.Current.Inject(context, headers, static (carrier, name, value) =>
        {
            // Only names the application has not set: its own tracestate or baggage stays as it wrote them.
            if (value is not null && carrier is Dictionary<string, string> target)
            {
                target.TryAdd(name, value);
            }
        });
        return headers.Count == before ? message : message.WithHeaders(headers);
    }

    /// <summary>
    /// Starts the consumer span of handling <paramref name="message"/>, a child of the context the message carries
    /// (or of the current activity when it carries none), or null when nobody listens.
    /// </summary>
    public static Activity? StartProcess(string backend, string topic, string group, ReceivedMessage message)
    {
        if (!IsListenedTo)
        {
            return null;
        }

        ActivityContext parent = default;
        var carried = message.Headers.ContainsKey(BusDefaults.TraceParentHeader);
        if (carried)
        {
            DistributedContextPropagator.Current.ExtractTraceIdAndState(message.Headers, ReadHeader, out var traceParent, out var traceState);
            _ = ActivityContext.TryParse(traceParent, traceState, isRemote: true, out parent);
        }

        var activity = BusTelemetry.Source.StartActivity("process " + topic, ActivityKind.Consumer, parent);
        if (activity is not null && carried)
        {
            // What the publisher's activity carried as baggage (the propagator sends it in a "baggage" header).
            foreach (var (name, value) in DistributedContextPropagator.Current.ExtractBaggage(message.Headers, ReadHeader) ?? [])
            {
                activity.AddBaggage(name, value);
            }
        }

        if (activity is { IsAllDataRequested: true })
        {
            activity.SetTag("messaging.system", BusTelemetry.SystemName(backend));
            activity.SetTag("messaging.destination.name", topic);
            activity.SetTag("messaging.consumer.group.name", group);
            activity.SetTag("messaging.operation.type", "process");
            activity.SetTag("messaging.operation.name", "process");
            activity.SetTag("messaging.message.id", message.MessageId);
            activity.SetTag("bus.delivery_count", message.DeliveryCount);
        }

        return activity;
    }

    /// <summary>
    /// Ends a span. A listener that throws as the span stops (an exporter's bug) does not fail what the span was about:
    /// the message was sent or handled already, and a publish reported failed after the broker took it would be sent
    /// again by a caller that retries; that span is lost instead.
    /// </summary>
    public static void End(Activity? activity)
    {
        try
        {
            activity?.Dispose();
        }
        catch (Exception)
        {
            // The listener's failure, not the message's: see above.
        }
    }

    /// <summary>Marks a span failed with <paramref name="error"/> (recorded as an event unless <paramref name="recorded"/> already is).</summary>
    public static void Failed(Activity? activity, Exception error, bool recorded = false)
    {
        if (activity is null)
        {
            return;
        }

        activity.SetStatus(ActivityStatusCode.Error, error.Message);
        activity.SetTag("error.type", error.GetType().FullName);
        if (!recorded)
        {
            activity.AddException(error);
        }
    }

    private static void ReadHeader(object? carrier, string name, out string? value, out IEnumerable<string>? values)
    {
        values = null;
        value = carrier is IReadOnlyDictionary<string, string> headers && headers.TryGetValue(name, out var found) ? found : null;
    }
}
