using System.Diagnostics;

namespace Bus.Memory;

/// <summary>
/// Milliseconds on a precise monotonic clock. <see cref="Environment.TickCount64"/> is coarse on Linux (a few ms),
/// enough to deliver a delayed message a little early.
/// </summary>
internal static class MemoryClock
{
    public static long NowMs => (long)(Stopwatch.GetTimestamp() * (1000.0 / Stopwatch.Frequency));

    public static long DueMs(TimeSpan delay) => NowMs + (long)Math.Ceiling(delay.TotalMilliseconds);
}
