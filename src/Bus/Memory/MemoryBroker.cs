using System.Collections.Concurrent;
using Bus.Transport;

namespace Bus.Memory;

/// <summary>
/// A process-local broker: topics, plus one timer loop for delays, delayed nacks and ack deadlines.
/// Named brokers are shared by every bus in the process that uses the name, and live as long as the process.
/// </summary>
internal sealed class MemoryBroker : IDisposable
{
    private static readonly ConcurrentDictionary<string, MemoryBroker> Named = new(StringComparer.OrdinalIgnoreCase);

    private readonly ConcurrentDictionary<string, MemoryTopic> _topics = new(StringComparer.Ordinal);
    private readonly int _retention;
    private readonly CancellationTokenSource _stop = new();

    private MemoryBroker(int retention)
    {
        _retention = retention;
        _ = Task.Run(TickLoopAsync);
    }

    public static MemoryBroker Get(string name, int retention)
        => name.Length == 0 ? new MemoryBroker(retention) : Named.GetOrAdd(name, static (_, r) => new MemoryBroker(r), retention);

    public MemoryTopic Topic(string name) => _topics.GetOrAdd(name, static (n, r) => new MemoryTopic(n, r), _retention);

    public void Ensure(TopicDefinition definition) => Topic(definition.Name).Ensure(definition);

    /// <summary>Forgets a topic with its log and groups (a later use of the name starts a new, empty topic).</summary>
    public void Delete(string name) => _topics.TryRemove(name, out _);

    /// <summary>Whether the topic exists (was used and not deleted since).</summary>
    public bool HasTopic(string name) => _topics.ContainsKey(name);

    public void Dispose()
    {
        _stop.Cancel();
        _stop.Dispose();
    }

    private async Task TickLoopAsync()
    {
        // 5 ms resolution for delays and deadlines; cheap when idle (a scan of a few topics).
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(5));
        var token = _stop.Token;
        try
        {
            while (await timer.WaitForNextTickAsync(token).ConfigureAwait(false))
            {
                var now = MemoryClock.NowMs;
                foreach (var topic in _topics.Values)
                {
                    topic.Tick(now);
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
    }
}
