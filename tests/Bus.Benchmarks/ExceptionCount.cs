using System.Collections.Concurrent;
using System.Runtime.CompilerServices;

namespace Bus.Benchmarks;

/// <summary>
/// Counts first-chance exceptions in each benchmark process and prints them by type when it exits (BenchmarkDotNet
/// shows the line in its log). A hot path that throws and catches per message costs more than its work does (the SQS
/// adapter once did, for every binary body), and nothing else makes it visible.
/// </summary>
internal static class ExceptionCount
{
    private static readonly ConcurrentDictionary<string, int> ByType = new(StringComparer.Ordinal);

#pragma warning disable CA2255 // a module initializer is the only hook that covers every benchmark process
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Start()
    {
        AppDomain.CurrentDomain.FirstChanceException += (_, e) => ByType.AddOrUpdate(e.Exception.GetType().Name, 1, static (_, n) => n + 1);
        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            var counts = ByType.OrderByDescending(p => p.Value).Select(p => $"{p.Key} {p.Value}");
            Console.WriteLine($"// first-chance exceptions in this process: {(ByType.IsEmpty ? "none" : string.Join(", ", counts))}");
        };
    }
}
