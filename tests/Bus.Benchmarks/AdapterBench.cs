using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Bus.Benchmarks;

/// <summary>
/// What every adapter benchmark shares (issues 5 and 6): the payload, the message count, the broker URL from the
/// environment, and a config that adds "msg/s" and "tput vs raw" (throughput adapter/raw, the inverse of BenchmarkDotNet's
/// Ratio) columns. Each adapter class puts the raw client (Baseline = true) and the adapter in the same category, so
/// Ratio and Alloc Ratio are adapter/raw per scenario. Only the messaging is timed: connect, declare, group creation
/// and subscription start happen in GlobalSetup, stream/queue clean-up in IterationSetup (except Redis's drain rows,
/// which time their group creation and subscription start on both sides).
/// </summary>
public static class AdapterBench
{
    /// <summary>Messages per benchmark invocation (OperationsPerInvoke): 5 windows of 4,096.</summary>
    public const int Messages = 20_480;

    /// <summary>The 256-byte payload every benchmark sends, raw and adapter alike.</summary>
    public static readonly byte[] Payload = CreatePayload();

    /// <summary>A run name that keeps topics of separate benchmark processes (and runs) apart.</summary>
    public static readonly string RunId = $"{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..6]}";

    private static long _idSequence;

    /// <summary>
    /// A fresh 32-hex-digit message id, made as core makes its ids (clock and counter, formatted per message), for the
    /// raw rows that write the adapter's layout. Not <c>Guid.NewGuid()</c>: on these machines every NewGuid reads
    /// /dev/urandom (one <c>read</c> system call per id, seen with strace; 1.7 µs each on one thread), and measured in
    /// paired rounds (Redis) it cost the raw "layout" rows more than half their throughput, which made them a wrong
    /// reference until 2026-11-23.
    /// </summary>
    public static string NewMessageId()
    {
        Span<byte> bytes = stackalloc byte[16];
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(bytes[8..], Interlocked.Increment(ref _idSequence));
        return Convert.ToHexStringLower(bytes);
    }

    /// <summary>The broker URL from <paramref name="variable"/>, or <paramref name="fallback"/>.</summary>
    public static string Url(string variable, string fallback)
    {
        var value = Environment.GetEnvironmentVariable(variable);
        return string.IsNullOrWhiteSpace(value) ? fallback : value.Trim();
    }

    private static byte[] CreatePayload()
    {
        var payload = new byte[256];
        new Random(256).NextBytes(payload);
        return payload;
    }

    /// <summary>
    /// <paramref name="total"/> fresh messages in chunks of <paramref name="size"/> (new objects per iteration, made in
    /// IterationSetup: the bus assigns each its id).
    /// </summary>
    public static OutgoingMessage[][] NewBatches(int size, int total = Messages)
    {
        var batches = new OutgoingMessage[total / size][];
        for (var b = 0; b < batches.Length; b++)
        {
            batches[b] = new OutgoingMessage[size];
            for (var i = 0; i < size; i++)
            {
                batches[b][i] = new OutgoingMessage(Payload);
            }
        }

        return batches;
    }

    /// <summary>Publishes each batch with <c>PublishBatchAsync</c>, one batch confirmed before the next.</summary>
    public static async Task PublishBatchesAsync(IMessageBus bus, string topic, OutgoingMessage[][] batches)
    {
        foreach (var batch in batches)
        {
            await bus.PublishBatchAsync(topic, batch);
        }
    }

    /// <summary>Starts a <c>PublishAsync</c> for every message of a batch before awaiting any, batch after batch.</summary>
    public static async Task PublishConcurrentlyAsync(IMessageBus bus, string topic, OutgoingMessage[][] batches)
    {
        var pending = new ValueTask[batches.Length == 0 ? 0 : batches.Max(batch => batch.Length)];
        foreach (var batch in batches)
        {
            for (var i = 0; i < batch.Length; i++)
            {
                pending[i] = bus.PublishAsync(topic, batch[i]);
            }

            for (var i = 0; i < batch.Length; i++)
            {
                await pending[i];
            }
        }
    }
}

/// <summary>Per-category baselines, a categories column, and throughput columns.</summary>
public sealed class AdapterBenchConfig : ManualConfig
{
    public AdapterBenchConfig()
    {
        AddLogicalGroupRules(BenchmarkLogicalGroupRule.ByCategory);
        AddColumn(CategoriesColumn.Default);
        AddColumn(new ThroughputColumn(false));
        AddColumn(new ThroughputColumn(true));
        // BUS_BENCH_ITERATIONS (default 5) buys steadier ratios on a busy machine at the price of a longer run.
        var iterations = int.TryParse(Environment.GetEnvironmentVariable("BUS_BENCH_ITERATIONS"), out var n) && n is >= 3 and <= 100 ? n : 5;
        // 50 warm-up calls (BUS_BENCH_BDN_WARMUP overrides): the JIT's tiering goes on long after the first calls. The
        // paired runner counted 20 to 45 calls (rounds) until it compiled next to nothing during them, depending on the
        // backend; calls take 0.03 s (Kafka's raw publish) to 1.6 s (SQS end to end). Two warm-up calls, as before
        // 2026-12-07, left the measured ones overlapping compilation.
        var warmup = int.TryParse(Environment.GetEnvironmentVariable("BUS_BENCH_BDN_WARMUP"), out var w) && w is >= 0 and <= 500 ? w : 50;
        AddJob(Job.Default.WithLaunchCount(1).WithWarmupCount(warmup).WithIterationCount(iterations).WithInvocationCount(1).WithUnrollFactor(1));
    }

    /// <summary>msg/s from the mean time per operation (one operation = one message), or its ratio to the baseline.</summary>
    private sealed class ThroughputColumn(bool relative) : IColumn
    {
        public string Id => relative ? "TputVsRaw" : "MsgPerSec";

        public string ColumnName => relative ? "tput vs raw" : "msg/s";

        public bool AlwaysShow => true;

        public ColumnCategory Category => ColumnCategory.Custom;

        public int PriorityInCategory => relative ? 1 : 0;

        public bool IsNumeric => true;

        public UnitType UnitType => UnitType.Dimensionless;

        public string Legend => relative ? "adapter throughput / raw throughput in the same category (1 / Ratio)" : "messages per second (1 / mean time per message)";

        public bool IsAvailable(Summary summary) => true;

        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase) => GetValue(summary, benchmarkCase, SummaryStyle.Default);

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style)
        {
            var mean = summary[benchmarkCase]?.ResultStatistics?.Mean;
            if (mean is not > 0)
            {
                return "NA";
            }

            if (!relative)
            {
                return (1e9 / mean.Value).ToString("N0", System.Globalization.CultureInfo.InvariantCulture);
            }

            var baseline = summary.GetBaseline(summary.GetLogicalGroupKey(benchmarkCase));
            var baseMean = baseline is null ? null : summary[baseline]?.ResultStatistics?.Mean;
            return baseMean is > 0 ? (baseMean.Value / mean.Value).ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) : "NA";
        }
    }
}

/// <summary>
/// The handler of every end-to-end benchmark's subscription: counts what it is handed (doing nothing else, so only the
/// messaging is measured) and completes <see cref="AllHandled"/> when <c>expected</c> messages arrived.
/// <see cref="Reset"/> before each invocation.
/// </summary>
/// <param name="expected">Messages per invocation.</param>
public sealed class HandledCounter(int expected)
{
    private int _handled;
    private TaskCompletionSource _allHandled = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Completes when the expected number of messages was handled since the last <see cref="Reset"/>.</summary>
    public Task AllHandled => _allHandled.Task;

    /// <summary>Starts counting from zero.</summary>
    public void Reset()
    {
        _handled = 0;
        _allHandled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>The subscription handler.</summary>
    public ValueTask HandleAsync(ReceivedMessage message, CancellationToken cancellationToken)
    {
        if (Interlocked.Increment(ref _handled) == expected)
        {
            _allHandled.TrySetResult();
        }

        return default;
    }
}
