using System.Diagnostics.Metrics;

namespace Bus.Tests;

/// <summary>Sums what one counter of the Bus meter records for one topic while this lives.</summary>
internal sealed class MetricCounter : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _total;

    public MetricCounter(string instrumentName, string topic)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == "Bus" && instrument.Name == instrumentName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "messaging.destination.name" && (string?)tag.Value == topic)
                {
                    Interlocked.Add(ref _total, value);
                }
            }
        });
        _listener.Start();
    }

    public long Total => Interlocked.Read(ref _total);

    public void Dispose() => _listener.Dispose();
}
