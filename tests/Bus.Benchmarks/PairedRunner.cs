using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using System.Text;
using BenchmarkDotNet.Attributes;

namespace Bus.Benchmarks;

/// <summary>
/// Runs one benchmark class's methods in alternating rounds in one process: every round times every method once,
/// back to back (forward order on even rounds, reverse on odd, so neither side always runs first), and a method's
/// ratio to its category's baseline is taken within the round. BenchmarkDotNet runs the raw client and the adapter in
/// separate processes minutes apart; on a 2-core machine that shares its cores with the broker, the machine's state
/// drifts between them by more than the difference sought (raw rows alone moved ±30–60 % between runs). Pairing
/// within a round cancels that drift; the median and quartiles of the per-round ratios say how steady the result is.
/// Same class, same set-up and the same timed code as BenchmarkDotNet runs (GlobalSetup once, IterationSetup before
/// each timed call, a full collection before it as BenchmarkDotNet's engine does).
/// </summary>
internal static class PairedRunner
{
    /// <summary>
    /// Untimed rounds first, at least BUS_BENCH_WARMUP (default 2), and then more until the JIT has gone quiet (see
    /// <see cref="MaxWarmupRounds"/>): the JIT's tiering (call counting, then an instrumented tier, then tier 1, each
    /// after a 100 ms pause) should be over for the adapter's longer path as for the raw one. Two warm-up rounds were
    /// not enough: on the Redis rows the JIT was still compiling seconds later (its background thread took 17 % of the
    /// bus's CPU samples 6–14 s into a run, 7 % of raw's), so timed calls overlapped compilation, the adapter's more
    /// than raw's.
    /// </summary>
    private static readonly int WarmupRounds = int.TryParse(Environment.GetEnvironmentVariable("BUS_BENCH_WARMUP"), out var warmup) && warmup >= 0 ? warmup : 2;

    /// <summary>
    /// The most warm-up rounds (BUS_BENCH_WARMUP_MAX, default 100; set it to BUS_BENCH_WARMUP for exactly that many):
    /// warming up stops earlier once the JIT compiled at most <see cref="QuietCompilations"/> methods during the timed
    /// calls of <see cref="QuietRounds"/> rounds in a row (the set-up around them compiles a few methods every round,
    /// for good: reflection's invoke stubs and the like, so only the timed calls are counted).
    /// </summary>
    private static readonly int MaxWarmupRounds = int.TryParse(Environment.GetEnvironmentVariable("BUS_BENCH_WARMUP_MAX"), out var most) && most >= 0 ? most : 100;

    /// <summary>
    /// Quiet rounds in a row that end the warm-up. Three were too few: the JIT goes quiet for a few rounds and then
    /// compiles again in bursts (up to about 190 methods in a round, around the 30th to 40th), as methods called once
    /// per call reach their call counts.
    /// </summary>
    private const int QuietRounds = 5;

    /// <summary>A warm-up round whose timed calls made the JIT compile this few methods counts as quiet.</summary>
    private const int QuietCompilations = 2;

    /// <summary>
    /// <c>--paired &lt;class name&gt; [rounds] [method,method…]</c> (all of the class's benchmarks when no method is
    /// named; useful with a profiler attached): returns the process exit code.
    /// </summary>
    public static async Task<int> RunAsync(string className, int rounds, IReadOnlyCollection<string>? only = null)
    {
        var type = typeof(PairedRunner).Assembly.GetTypes().SingleOrDefault(t => string.Equals(t.Name, className, StringComparison.OrdinalIgnoreCase));
        if (type is null)
        {
            Console.Error.WriteLine($"no benchmark class named '{className}'");
            return 2;
        }

        if (type.GetFields().Any(f => f.GetCustomAttribute<ParamsAttribute>() is not null))
        {
            Console.Error.WriteLine($"{type.Name} has [Params] fields; the paired runner sets [Params] properties only");
            return 2;
        }

        var methods = type.GetMethods()
            .Select(m => (Method: m, Attribute: m.GetCustomAttribute<BenchmarkAttribute>()))
            .Where(m => m.Attribute is not null && (only is null || only.Contains(m.Method.Name)))
            .Select(m => new Timed(
                m.Method,
                m.Attribute!.Description ?? m.Method.Name,
                m.Method.GetCustomAttribute<BenchmarkCategoryAttribute>()?.Categories.FirstOrDefault() ?? "",
                m.Attribute.Baseline,
                m.Attribute.OperationsPerInvoke))
            .ToList();

        // BUS_BENCH_BASELINE=<method>: that method is its category's baseline instead (say the raw client writing the
        // adapter's layout, to take the per-round ratios against it rather than against bare raw).
        if (Environment.GetEnvironmentVariable("BUS_BENCH_BASELINE") is { Length: > 0 } baselineName)
        {
            var chosen = methods.SingleOrDefault(m => m.Method.Name == baselineName);
            if (chosen is null)
            {
                Console.Error.WriteLine($"BUS_BENCH_BASELINE names '{baselineName}', which is not among the methods run");
                return 2;
            }

            methods = methods.Select(m => m.Category != chosen.Category ? m : m with { Baseline = ReferenceEquals(m, chosen) }).ToList();
        }

        var instance = Activator.CreateInstance(type)!;
        var parameters = SetParameters(type, instance);
        if (parameters.Length > 0)
        {
            Console.Error.WriteLine($"parameters: {parameters}");
        }

        await InvokeAsync(instance, Find<GlobalSetupAttribute>(type));
        var brokerPid = int.TryParse(Environment.GetEnvironmentVariable("BUS_BENCH_BROKER_PID"), out var pid) ? pid : (int?)null;
        var warmedUp = 0;
        var quiet = 0;
        try
        {
            // Warm-up: untimed rounds until the JIT is quiet (see WarmupRounds).
            while (warmedUp < WarmupRounds || (quiet < QuietRounds && warmedUp < MaxWarmupRounds))
            {
                var compiled = await RoundAsync(warmedUp, measured: false);
                quiet = compiled <= QuietCompilations ? quiet + 1 : 0;
                warmedUp++;
                Console.Error.Write(FormattableString.Invariant($"w{compiled} "));
            }

            for (var round = 0; round < rounds; round++)
            {
                await RoundAsync(warmedUp + round, measured: true);
                Console.Error.Write(".");
            }
        }
        finally
        {
            await InvokeAsync(instance, Find<GlobalCleanupAttribute>(type));
        }

        // Returns how many methods the JIT compiled during the round's timed calls.
        async Task<long> RoundAsync(int round, bool measured)
        {
            long compiledInCalls = 0;
            var order = round % 2 == 0 ? methods : Enumerable.Reverse(methods);
            foreach (var timed in order)
            {
                await InvokeAsync(instance, FindFor<IterationSetupAttribute>(type, timed.Method.Name));
                GC.Collect();
                GC.WaitForPendingFinalizers();
                GC.Collect();
                // Reading /proc allocates and costs CPU: the broker first, then this process, then the allocation
                // count, so that none of the reading is charged to the timed call.
                var brokerCpuBefore = brokerPid is { } broker ? Cpu(broker).Nanoseconds : 0;
                var cpuBefore = Cpu(Environment.ProcessId);
                var allocatedBefore = GC.GetTotalAllocatedBytes(precise: true);
                var pausedBefore = GC.GetTotalPauseDuration();
                var collectionsBefore = GC.CollectionCount(0);
                var contentionsBefore = Monitor.LockContentionCount;
                var workItemsBefore = ThreadPool.CompletedWorkItemCount;
                var compiledBefore = System.Runtime.JitInfo.GetCompiledMethodCount();
                var started = Stopwatch.GetTimestamp();
                await InvokeAsync(instance, timed.Method);
                var elapsed = Stopwatch.GetElapsedTime(started);
                var allocated = GC.GetTotalAllocatedBytes(precise: true) - allocatedBefore;
                var paused = GC.GetTotalPauseDuration() - pausedBefore;
                var collections = GC.CollectionCount(0) - collectionsBefore;
                var contentions = Monitor.LockContentionCount - contentionsBefore;
                var workItems = ThreadPool.CompletedWorkItemCount - workItemsBefore;
                var compiledDuring = System.Runtime.JitInfo.GetCompiledMethodCount() - compiledBefore;
                compiledInCalls += compiledDuring;
                if (Environment.GetEnvironmentVariable("BUS_BENCH_GCINFO") == "1")
                {
                    foreach (var kind in new[] { GCKind.Ephemeral, GCKind.FullBlocking, GCKind.Background })
                    {
                        var info = GC.GetGCMemoryInfo(kind);
                        Console.Error.WriteLine($"{timed.Method.Name} {kind}: index {info.Index} gen {info.Generation} promoted {info.PromotedBytes / 1024} KB pause {info.PauseDurations[0].TotalMilliseconds:0.00} ms heap {info.HeapSizeBytes / 1024} KB gen1 count {GC.CollectionCount(1) } gen2 {GC.CollectionCount(2)}");
                    }
                }
                var cpuAfter = Cpu(Environment.ProcessId);
                var brokerCpu = brokerPid is { } brokerAfter ? Cpu(brokerAfter).Nanoseconds - brokerCpuBefore : double.NaN;
                await InvokeAsync(instance, FindFor<IterationCleanupAttribute>(type, timed.Method.Name));
                if (measured)
                {
                    timed.NanosecondsPerOperation.Add(elapsed.TotalNanoseconds / timed.Operations);
                    timed.BytesPerOperation.Add((double)allocated / timed.Operations);
                    timed.CpuNanosecondsPerOperation.Add((cpuAfter.Nanoseconds - cpuBefore.Nanoseconds) / timed.Operations);
                    timed.SlicesPerOperation.Add((cpuAfter.Slices - cpuBefore.Slices) / timed.Operations);
                    timed.BrokerCpuNanosecondsPerOperation.Add(brokerCpu / timed.Operations);
                    timed.GcPauseNanosecondsPerOperation.Add(paused.TotalNanoseconds / timed.Operations);
                    timed.CollectionsPerThousand.Add(collections * 1000.0 / timed.Operations);
                    timed.ContentionsPerThousand.Add(contentions * 1000.0 / timed.Operations);
                    timed.WorkItemsPerOperation.Add((double)workItems / timed.Operations);
                    timed.CompiledPerCall.Add(compiledDuring);
                }
            }

            return compiledInCalls;
        }

        Console.Error.WriteLine();
        var warmupEnded = quiet >= QuietRounds
            ? $"until the JIT compiled at most {QuietCompilations} methods during the timed calls of {QuietRounds} rounds in a row"
            : MaxWarmupRounds <= WarmupRounds
                ? "as set by BUS_BENCH_WARMUP (BUS_BENCH_WARMUP_MAX no higher)"
                : "stopped at BUS_BENCH_WARMUP_MAX although the JIT had not gone quiet";
        var report = Report(parameters.Length > 0 ? $"{type.Name} ({parameters})" : type.Name, rounds, $"{warmedUp} warm-up, {warmupEnded}", methods);
        Console.WriteLine(report);
        var directory = Path.Combine("BenchmarkDotNet.Artifacts", "paired");
        Directory.CreateDirectory(directory);
        var path = Path.Combine(directory, $"{type.Name}-{DateTime.UtcNow:yyyyMMdd-HHmmss}.md");
        await File.WriteAllTextAsync(path, report);
        Console.WriteLine($"written: {path}");
        return 0;
    }

    /// <summary>
    /// Sets each [Params] property: to the value named in <c>BUS_BENCH_PARAMS</c> (<c>Name=value,Name=value</c>), else
    /// to its first listed value. Returns what was set, for the report.
    /// </summary>
    private static string SetParameters(Type type, object instance)
    {
        var requested = (Environment.GetEnvironmentVariable("BUS_BENCH_PARAMS") ?? "")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(pair => pair.Split('=', 2))
            .ToDictionary(pair => pair[0], pair => pair.Length > 1 ? pair[1] : "", StringComparer.OrdinalIgnoreCase);
        var set = new List<string>();
        foreach (var property in type.GetProperties())
        {
            if (property.GetCustomAttribute<ParamsAttribute>() is not { } attribute)
            {
                continue;
            }

            var value = requested.TryGetValue(property.Name, out var text)
                ? Convert.ChangeType(text, property.PropertyType, CultureInfo.InvariantCulture)
                : attribute.Values[0];
            property.SetValue(instance, value);
            set.Add(string.Create(CultureInfo.InvariantCulture, $"{property.Name}={value}"));
        }

        var unknown = requested.Keys.Where(name => type.GetProperty(name, BindingFlags.Public | BindingFlags.Instance | BindingFlags.IgnoreCase)?.GetCustomAttribute<ParamsAttribute>() is null).ToList();
        if (unknown.Count > 0)
        {
            throw new ArgumentException($"BUS_BENCH_PARAMS names {string.Join(", ", unknown)}, which {type.Name} has no [Params] property for");
        }

        return string.Join(", ", set);
    }

    private static string Report(string className, int rounds, string warmup, List<Timed> methods)
    {
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"{className}: {rounds} paired rounds (+{warmup}), {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
        text.AppendLine();
        text.AppendLine("tput vs raw = baseline time / method time within each round (1.00 = as fast as raw): median [quartiles] (min–max); rounds ≥ 0.95 counted. client CPU = this process's CPU time (all threads, from /proc/<pid>/task/*/schedstat) per message, the median over rounds; wake-ups = times its threads were put on a CPU (schedstat's third field) per message; broker CPU the same for the process BUS_BENCH_BROKER_PID names (NaN without it); GC pause = time this process was paused for garbage collection per message, and collections (any generation) per 1,000 messages; lock waits = times a thread of this process found a lock (Monitor or System.Threading.Lock) taken and had to wait for it, per 1,000 messages; work items = thread-pool work items completed per message (continuations, timers and queued work that ran on the pool); JIT'd = methods the JIT compiled during the timed calls (any tier), in all and in how many rounds: a round with any ran partly in code not yet at its final tier (most likely methods called once per call, which reach the next tier's call count last).");
        text.AppendLine();
        text.AppendLine("| category | method | median msg/s | B/msg | client CPU µs/msg | client wake-ups/msg | broker CPU µs/msg | GC pause µs/msg | GCs per 1k msg | lock waits per 1k msg | work items/msg | JIT'd | tput vs raw | rounds ≥ 0.95 |");
        text.AppendLine("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (var category in methods.GroupBy(m => m.Category))
        {
            var baseline = category.FirstOrDefault(m => m.Baseline);
            foreach (var timed in category)
            {
                var throughput = 1e9 / Median(timed.NanosecondsPerOperation);
                var ratio = "—";
                var atLeast = "—";
                if (baseline is not null && !ReferenceEquals(baseline, timed))
                {
                    var ratios = timed.NanosecondsPerOperation.Select((ns, i) => baseline.NanosecondsPerOperation[i] / ns).ToList();
                    ratio = FormattableString.Invariant($"{Median(ratios):0.00} [{Quantile(ratios, 0.25):0.00}–{Quantile(ratios, 0.75):0.00}] ({ratios.Min():0.00}–{ratios.Max():0.00})");
                    atLeast = $"{ratios.Count(r => r >= 0.95)}/{ratios.Count}";
                }

                text.AppendLine(CultureInfo.InvariantCulture, $"| {category.Key} | {timed.Description}{(timed.Baseline ? " (baseline)" : "")} | {throughput:N0} | {Median(timed.BytesPerOperation):N0} | {Median(timed.CpuNanosecondsPerOperation) / 1000:0.00} | {Median(timed.SlicesPerOperation):0.000} | {Median(timed.BrokerCpuNanosecondsPerOperation) / 1000:0.00} | {Median(timed.GcPauseNanosecondsPerOperation) / 1000:0.00} | {Median(timed.CollectionsPerThousand):0.00} | {Median(timed.ContentionsPerThousand):0.00} | {Median(timed.WorkItemsPerOperation):0.000} | {timed.CompiledPerCall.Sum():0} in {timed.CompiledPerCall.Count(c => c > 0)}/{timed.CompiledPerCall.Count} | {ratio} | {atLeast} |");
            }
        }

        return text.ToString();
    }

    /// <summary>
    /// CPU time of every live thread of a process, nanoseconds, and how many times its threads were put on a CPU
    /// (each wake-up of a sleeping thread counts; Linux; zeros elsewhere).
    /// </summary>
    private static (double Nanoseconds, double Slices) Cpu(int pid)
    {
        var tasks = $"/proc/{pid}/task";
        if (!Directory.Exists(tasks))
        {
            return (0, 0);
        }

        double total = 0, slices = 0;
        foreach (var task in Directory.EnumerateDirectories(tasks))
        {
            try
            {
                // "<ns on cpu> <ns waiting for a cpu> <time slices>"
                var fields = File.ReadAllText(Path.Combine(task, "schedstat")).Split(' ');
                total += double.Parse(fields[0], CultureInfo.InvariantCulture);
                slices += double.Parse(fields[2], CultureInfo.InvariantCulture);
            }
            catch (IOException)
            {
                // The thread ended between listing and reading.
            }
        }

        return (total, slices);
    }

    private static double Median(List<double> values) => Quantile(values, 0.5);

    private static double Quantile(List<double> values, double q)
    {
        var sorted = values.Order().ToList();
        var position = (sorted.Count - 1) * q;
        var below = (int)Math.Floor(position);
        var above = Math.Min(below + 1, sorted.Count - 1);
        return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
    }

    private static MethodInfo? Find<TAttribute>(Type type)
        where TAttribute : Attribute => type.GetMethods().SingleOrDefault(m => m.GetCustomAttribute<TAttribute>() is not null);

    /// <summary>
    /// The set-up or clean-up that BenchmarkDotNet runs around <paramref name="benchmark"/>: the one that names it in
    /// its targets, else the one without targets.
    /// </summary>
    private static MethodInfo? FindFor<TAttribute>(Type type, string benchmark)
        where TAttribute : TargetedAttribute
    {
        var candidates = type.GetMethods()
            .Select(m => (Method: m, Attribute: m.GetCustomAttribute<TAttribute>()))
            .Where(c => c.Attribute is not null)
            .ToList();
        return candidates.FirstOrDefault(c => c.Attribute!.Targets.Contains(benchmark)).Method
            ?? candidates.SingleOrDefault(c => c.Attribute!.Targets.Length == 0).Method;
    }

    private static async Task InvokeAsync(object instance, MethodInfo? method)
    {
        switch (method?.Invoke(instance, null))
        {
            case Task task:
                await task;
                break;
            case ValueTask valueTask:
                await valueTask;
                break;
        }
    }

    private sealed record Timed(MethodInfo Method, string Description, string Category, bool Baseline, int Operations)
    {
        public List<double> NanosecondsPerOperation { get; } = [];

        public List<double> BytesPerOperation { get; } = [];

        public List<double> CpuNanosecondsPerOperation { get; } = [];

        public List<double> BrokerCpuNanosecondsPerOperation { get; } = [];

        public List<double> SlicesPerOperation { get; } = [];

        public List<double> GcPauseNanosecondsPerOperation { get; } = [];

        public List<double> CollectionsPerThousand { get; } = [];

        public List<double> ContentionsPerThousand { get; } = [];

        public List<double> WorkItemsPerOperation { get; } = [];

        public List<double> CompiledPerCall { get; } = [];
    }
}
