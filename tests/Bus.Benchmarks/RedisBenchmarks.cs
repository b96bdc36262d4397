using BenchmarkDotNet.Attributes;
using StackExchange.Redis;

namespace Bus.Benchmarks;

/// <summary>
/// Bus.Redis against raw StackExchange.Redis on the same server, 256-byte messages, <see cref="AdapterBench.Messages"/>
/// per operation (allocations and times are per message).
/// <list type="bullet">
/// <item>publish: XADD confirmed by Redis's reply, 4,096 in flight (5 windows of 4,096, each awaited). Raw: 4,096
/// <c>StreamAddAsync</c> + <c>Task.WhenAll</c>; Bus: <c>PublishBatchAsync</c> of 4,096, and 4,096 <c>PublishAsync</c>
/// started before any is awaited.</item>
/// <item>end to end: the same producer and, concurrently, one consumer of a group with at most 256 unacked. Raw:
/// <c>XREADGROUP COUNT 256</c> (no BLOCK, as the adapter polls) then <c>XACK</c> of that batch, the XACK pipelined
/// ahead of the next read; when empty it waits for the producer's signal or 1 ms. Bus: a subscription with
/// MaxInFlight 256, PerKeyOrdering off, a handler that only counts, auto-ack.</item>
/// <item>drain: the consumer side alone. Before each call Redis itself writes a backlog of 20,480 entries in the
/// adapter's layout (a script, so this process spends nothing on it); raw creates its group and drains it as in end to
/// end, reading each entry's body and id; Bus subscribes from the earliest entry (same options as end to end) and
/// drains it. Group creation and the subscription's start are timed on both sides; the subscription is disposed after
/// the call, untimed.</item>
/// </list>
/// The bus is created with <c>poll-max-delay=2</c> (ms; default 20) so that an empty poll between windows costs at
/// most 2 ms as the raw consumer's 1 ms wait does; while messages flow it makes no difference (the adapter does not
/// pause when a poll returns entries, and a publish through the same bus wakes its consumers). Override the whole URL
/// with BUS_BENCH_REDIS_URL to try other settings.
///
/// Broker: a native redis-server, e.g.
/// <c>redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly no --daemonize yes</c>, then
/// <c>BUS_BENCH_REDIS_URL='redis://127.0.0.1:6390?poll-max-delay=2' dotnet run -c Release --project tests/Bus.Benchmarks --no-build -- --filter '*Redis*'</c>
/// (default URL <c>redis://127.0.0.1:6379?poll-max-delay=2</c>).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(AdapterBenchConfig))]
public class RedisBenchmarks
{
    private const int Window = 4_096;
    private const int ReadCount = 256;
    private const string Group = "bench";

    private readonly string _run = AdapterBench.RunId;
    private ConnectionMultiplexer _redis = null!;
    private IDatabase _db = null!;
    private MessageBus _bus = null!;
    private ISubscription? _subscription;
    private OutgoingMessage[][] _batches = null!;
    private readonly HandledCounter _handled = new(AdapterBench.Messages);
    private readonly SemaphoreSlim _produced = new(0);
    private readonly HandledCounter _drained = new(AdapterBench.Messages);
    private ISubscription? _drainSubscription;

    private static string BusUrl => AdapterBench.Url("BUS_BENCH_REDIS_URL", "redis://127.0.0.1:6379?poll-max-delay=2");

    private string RawPublishKey => $"bench-raw-pub-{_run}";
    private string RawE2EKey => $"bench-raw-e2e-{_run}";
    private string BusPublishKey => $"bench-bus-pub-{_run}";
    private string BusE2EKey => $"bench-bus-e2e-{_run}";
    private string RawDrainKey => $"bench-raw-drain-{_run}";
    private string BusDrainKey => $"bench-bus-drain-{_run}";

    [GlobalSetup]
    public async Task SetupAsync()
    {
        var uri = new Uri(BusUrl);
        var configuration = new ConfigurationOptions { EndPoints = { { uri.Host, uri.IsDefaultPort || uri.Port < 0 ? 6379 : uri.Port } }, AbortOnConnectFail = true };
        _redis = await ConnectionMultiplexer.ConnectAsync(configuration);
        _db = _redis.GetDatabase();
        await _db.StreamCreateConsumerGroupAsync(RawE2EKey, Group, "$", createStream: true);

        _bus = MessageBus.Create(BusUrl);
        await _bus.ConnectAsync();
        await _bus.EnsureTopicAsync(BusPublishKey);
        await _bus.EnsureTopicAsync(BusE2EKey);
        _subscription = await _bus.SubscribeAsync(BusE2EKey, _handled.HandleAsync, new SubscriptionOptions { Group = Group, MaxInFlight = ReadCount, PerKeyOrdering = false });
    }

    [IterationSetup]
    public void IterationSetup()
    {
        // Empty the streams (groups stay) so every iteration writes to a stream of the same size.
        foreach (var key in new[] { RawPublishKey, RawE2EKey, BusPublishKey, BusE2EKey })
        {
            _db.StreamTrim(key, 0);
        }

        _batches = AdapterBench.NewBatches(Window);
        _handled.Reset();
    }

    [IterationSetup(Target = nameof(RawDrain))]
    public void RawDrainIterationSetup() => FillBacklog(RawDrainKey);

    [IterationSetup(Target = nameof(BusDrain))]
    public void BusDrainIterationSetup()
    {
        FillBacklog(BusDrainKey);
        _drained.Reset();
    }

    /// <summary>A drain row's backlog, written by Redis itself (a script), so that filling it costs this process nothing.</summary>
    private void FillBacklog(RedisKey key)
    {
        _db.KeyDelete(key);
        for (var filled = 0; filled < AdapterBench.Messages; filled += Window)
        {
            _db.ScriptEvaluate(FillScript, [key], [AdapterBench.Payload, Window, Guid.NewGuid().ToString("N")[..24]]);
        }
    }

    [IterationCleanup(Target = nameof(BusDrain))]
    public void DrainIterationCleanup()
    {
        _drainSubscription?.DisposeAsync().AsTask().GetAwaiter().GetResult();
        _drainSubscription = null;
    }

    /// <summary>XADDs ARGV[2] entries in the adapter's layout: field body (ARGV[1]) and field id (ARGV[3] and a counter, 32 characters).</summary>
    private const string FillScript = "for i=1,tonumber(ARGV[2]) do redis.call('XADD', KEYS[1], '*', 'body', ARGV[1], 'id', ARGV[3] .. string.format('%08x', i)) end return 1";

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        if (_subscription is not null)
        {
            await _subscription.DisposeAsync();
        }

        await _bus.DisposeAsync();
        await _db.KeyDeleteAsync([RawPublishKey, RawE2EKey, BusPublishKey, BusE2EKey, BusPublishKey + ".dlq", BusE2EKey + ".dlq", RawDrainKey, BusDrainKey, BusDrainKey + ".dlq"]);
        await _redis.DisposeAsync();
    }

    // ---- publish (confirmed by the XADD reply), 4,096 in flight ----

    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw XADD ×4096 in flight")]
    [BenchmarkCategory("publish")]
    public Task RawPublish() => RawProduceAsync(RawPublishKey, signal: false);

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishBatchAsync(4096)")]
    [BenchmarkCategory("publish")]
    public Task BusPublishBatch() => AdapterBench.PublishBatchesAsync(_bus, BusPublishKey, _batches);

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishAsync ×4096 in flight")]
    [BenchmarkCategory("publish")]
    public Task BusPublishConcurrent() => AdapterBench.PublishConcurrentlyAsync(_bus, BusPublishKey, _batches);

    /// <summary>
    /// Not a baseline: raw XADD with the adapter's entry layout (fields body and id, a fresh 32-character id, as core assigns, the body
    /// copied per entry), to separate the cost of the layout from the adapter's own per-message work.
    /// </summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw XADD ×4096, adapter's entry layout (body + id)")]
    [BenchmarkCategory("publish")]
    public Task RawPublishAdapterLayout() => RawProduceAsync(RawPublishKey, signal: false, adapterLayout: true);

    // ---- publish → consume → ack ----

    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw XADD ×4096 → XREADGROUP 256 + XACK")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEnd()
    {
        var consumer = Task.Run(() => RawConsumeAsync(RawE2EKey, readFields: false));
        await RawProduceAsync(RawE2EKey, signal: true);
        await consumer;
    }

    /// <summary>
    /// Not a baseline: the raw end to end with the adapter's entry layout (see <see cref="RawPublishAdapterLayout"/>),
    /// its consumer reading each entry's body and id as an application would (the bus hands both to its handler).
    /// </summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw XADD ×4096 → XREADGROUP 256 + XACK, adapter's entry layout")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEndAdapterLayout()
    {
        var consumer = Task.Run(() => RawConsumeAsync(RawE2EKey, readFields: true));
        await RawProduceAsync(RawE2EKey, signal: true, adapterLayout: true);
        await consumer;
    }

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishBatchAsync(4096) → subscription 256 + ack")]
    [BenchmarkCategory("end-to-end")]
    public async Task BusEndToEnd()
    {
        await AdapterBench.PublishBatchesAsync(_bus, BusE2EKey, _batches);

        await _handled.AllHandled;
    }

    // ---- the consumer side alone: a backlog of 20,480 entries in the adapter's layout, drained ----

    /// <summary>
    /// Raw consumer alone: the group is created at the start of the backlog, then <c>XREADGROUP COUNT 256</c> and
    /// <c>XACK</c> as in <see cref="RawEndToEnd"/>, reading each entry's body and id as an application would.
    /// </summary>
    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw drain: XREADGROUP 256 + XACK of a backlog (adapter's layout)")]
    [BenchmarkCategory("drain")]
    public async Task RawDrain()
    {
        await _db.StreamCreateConsumerGroupAsync(RawDrainKey, Group, "0");
        await RawConsumeAsync(RawDrainKey, readFields: true);
    }

    /// <summary>Bus consumer alone: a subscription (MaxInFlight 256, from the earliest entry) drains the same backlog.</summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus drain: subscription 256 + ack of a backlog")]
    [BenchmarkCategory("drain")]
    public async Task BusDrain()
    {
        _drainSubscription = await _bus.SubscribeAsync(BusDrainKey, _drained.HandleAsync, new SubscriptionOptions { Group = Group, MaxInFlight = ReadCount, PerKeyOrdering = false, StartPosition = StartPosition.Earliest });
        await _drained.AllHandled.WaitAsync(TimeSpan.FromMinutes(2));
    }

    private long _sink;

    private async Task RawProduceAsync(string key, bool signal, bool adapterLayout = false)
    {
        var pending = new Task[Window];
        var fields = new NameValueEntry[] { new("body", AdapterBench.Payload) };
        for (var sent = 0; sent < AdapterBench.Messages; sent += Window)
        {
            for (var i = 0; i < Window; i++)
            {
                pending[i] = adapterLayout
                    ? _db.StreamAddAsync(key, [new NameValueEntry("body", AdapterBench.Payload.AsSpan().ToArray()), new NameValueEntry("id", AdapterBench.NewMessageId())])
                    : _db.StreamAddAsync(key, fields);
            }

            await Task.WhenAll(pending);
            if (signal)
            {
                _produced.Release();
            }
        }
    }

    /// <summary>
    /// The raw consumer: <c>XREADGROUP COUNT 256</c>, then <c>XACK</c> of that batch pipelined ahead of the next read;
    /// when the stream is empty it waits for the producer's signal or 1 ms. With <paramref name="readFields"/> it reads
    /// each entry's body and id, as an application would.
    /// </summary>
    private async Task RawConsumeAsync(RedisKey key, bool readFields)
    {
        var received = 0;
        Task ack = Task.CompletedTask;
        while (received < AdapterBench.Messages)
        {
            // The XACK of the previous batch is already on the wire ahead of this read: at most 256 unacked.
            var read = _db.StreamReadGroupAsync(key, Group, "raw", StreamPosition.NewMessages, ReadCount);
            await ack;
            var entries = await read;
            if (entries.Length == 0)
            {
                await _produced.WaitAsync(1);
                continue;
            }

            var ids = new RedisValue[entries.Length];
            for (var i = 0; i < entries.Length; i++)
            {
                ids[i] = entries[i].Id;
                if (readFields)
                {
                    _sink += ((ReadOnlyMemory<byte>)entries[i].Values[0].Value).Length + ((string?)entries[i].Values[1].Value)!.Length;
                }
            }

            received += entries.Length;
            ack = _db.StreamAcknowledgeAsync(key, Group, ids);
        }

        await ack;
        while (_produced.CurrentCount > 0)
        {
            _produced.Wait(0);
        }
    }
}
