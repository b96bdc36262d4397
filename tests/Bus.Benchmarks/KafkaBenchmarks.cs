using BenchmarkDotNet.Attributes;
using Confluent.Kafka;

namespace Bus.Benchmarks;

/// <summary>
/// Bus.Kafka against raw Confluent.Kafka 2.16 on the same cluster, 256-byte keyless records,
/// <see cref="AdapterBench.Messages"/> per operation (times and allocations are per message).
/// <list type="bullet">
/// <item>publish: confirmed by the delivery report, 4,096 in flight (5 windows of 4,096, each awaited). Both
/// producers have the adapter's configuration (acks=all, idempotence, murmur2_random, linger.ms=1, delivery reports
/// carrying the status only). Raw:
/// <c>Produce</c> with a delivery handler counting down the window; Bus: <c>PublishBatchAsync</c> of 4,096, and
/// 4,096 <c>PublishAsync</c> started before any is awaited.</item>
/// <item>end to end: the same producer and, concurrently, one consumer in its own group. Raw: a thread calling
/// <c>Consume</c> and <c>StoreOffset</c> per record (auto-commit of stored offsets, enable.auto.offset.store=false,
/// as the adapter); Bus: a subscription with MaxInFlight 4,096, PerKeyOrdering off, a handler that only counts,
/// auto-ack (the adapter stores the contiguous acked prefix). Both consumers fetch with fetch.wait.max.ms=10 (see
/// <see cref="FetchWaitMaxMs"/>). Group joins (about 3 s on the mock) happen in GlobalSetup.</item>
/// </list>
/// Broker: librdkafka's mock cluster (not Kafka: its numbers say nothing about a real broker), hosted by kcat:
/// <c>kcat -X test.mock.num.brokers=3 -X socket.nagle.disable=true -b localhost:1 -C -t keepalive -d mock</c> prints
/// <c>bootstrap.servers=127.0.0.1:P1,...</c> on stderr; then
/// <c>BUS_BENCH_KAFKA_URL=kafka://127.0.0.1:P1 dotnet run -c Release --project tests/Bus.Benchmarks --no-build -- --filter '*Kafka*'</c>
/// (default <c>kafka://127.0.0.1:9092</c>, which also suits a real broker).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(AdapterBenchConfig))]
public class KafkaBenchmarks
{
    private const int Window = 4_096;
    private const int MaxInFlight = 4_096;

    /// <summary>
    /// Both consumers' fetch.wait.max.ms. The mock cluster answers a fetch that finds no data only when this wait is
    /// over, even if records arrive meanwhile (a Kafka broker answers as soon as fetch.min.bytes are there): with
    /// librdkafka's default of 500 ms a consumer saw nothing for up to half a second after a round began, and the end
    /// to end rows measured where that wait fell in each round rather than either client.
    /// </summary>
    private const int FetchWaitMaxMs = 10;

    private readonly string _run = AdapterBench.RunId.Replace("-", "_", StringComparison.Ordinal);
    private IProducer<byte[]?, byte[]> _producer = null!;
    private IConsumer<byte[]?, byte[]?> _consumer = null!;
    private Thread? _consumerThread;
    private readonly CancellationTokenSource _stop = new();
    private MessageBus _bus = null!;
    private ISubscription? _subscription;
    private OutgoingMessage[][] _batches = null!;
    private readonly HandledCounter _handled = new(AdapterBench.Messages);
    private int _rawReceived;
    private TaskCompletionSource _allReceived = new();
    private int _outstanding;
    private TaskCompletionSource _windowDone = new();
    private Action<DeliveryReport<byte[]?, byte[]>> _onDelivered = null!;

    private static string BusUrl => AdapterBench.Url("BUS_BENCH_KAFKA_URL", "kafka://127.0.0.1:9092");

    private string RawPublishTopic => $"bench-raw-pub-{_run}";
    private string RawE2ETopic => $"bench-raw-e2e-{_run}";
    private string BusPublishTopic => $"bench-bus-pub-{_run}";
    private string BusE2ETopic => $"bench-bus-e2e-{_run}";

    [GlobalSetup]
    public async Task SetupAsync()
    {
        // The URI's query wins over these settings, so BUS_BENCH_KAFKA_URL can still name its own.
        _bus = MessageBus.Create(new BusOptions { Url = BusUrl, Settings = { ["consumer.fetch.wait.max.ms"] = FetchWaitMaxMs.ToString(System.Globalization.CultureInfo.InvariantCulture) } });
        await _bus.ConnectAsync();
        foreach (var topic in new[] { RawPublishTopic, RawE2ETopic, BusPublishTopic, BusE2ETopic })
        {
            await _bus.EnsureTopicAsync(topic);
        }

        _subscription = await _bus.SubscribeAsync(BusE2ETopic, _handled.HandleAsync, new SubscriptionOptions { Group = $"bench-bus-{_run}", MaxInFlight = MaxInFlight, PerKeyOrdering = false });

        var uri = new Uri(BusUrl);
        var bootstrap = $"{uri.Host}:{(uri.Port > 0 ? uri.Port : 9092)}";
        _producer = new ProducerBuilder<byte[]?, byte[]>(new ProducerConfig
        {
            BootstrapServers = bootstrap,
            Acks = Acks.All,
            EnableIdempotence = true,
            Partitioner = Partitioner.Murmur2Random,
            LingerMs = 1,
            DeliveryReportFields = "status",
            ClientId = "bench-raw-producer",
        }).Build();
        _onDelivered = report =>
        {
            if (report.Error.IsError)
            {
                _windowDone.TrySetException(new KafkaException(report.Error));
            }
            else if (Interlocked.Decrement(ref _outstanding) == 0)
            {
                _windowDone.TrySetResult();
            }
        };

        _consumer = new ConsumerBuilder<byte[]?, byte[]?>(new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = $"bench-raw-{_run}",
            EnableAutoCommit = true,
            EnableAutoOffsetStore = false,
            EnablePartitionEof = false,
            AutoCommitIntervalMs = 1_000,
            AutoOffsetReset = AutoOffsetReset.Earliest, // a new topic: nothing before this run
            FetchWaitMaxMs = FetchWaitMaxMs,
            ClientId = "bench-raw-consumer",
        }).Build();
        _consumer.Subscribe(RawE2ETopic);
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (_consumer.Assignment.Count == 0 && DateTime.UtcNow < deadline)
        {
            _consumer.Consume(TimeSpan.FromMilliseconds(100));
        }

        if (_consumer.Assignment.Count == 0)
        {
            throw new InvalidOperationException("the raw consumer got no partitions within 30 s");
        }

        _consumerThread = new Thread(RawConsumeLoop) { IsBackground = true, Name = "bench-raw-consumer" };
        _consumerThread.Start();
    }

    [IterationSetup]
    public void IterationSetup()
    {
        _batches = AdapterBench.NewBatches(Window);
        _handled.Reset();
        Volatile.Write(ref _rawReceived, 0);
        _allReceived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        _stop.Cancel();
        _consumerThread?.Join();
        _consumer.Close();
        _consumer.Dispose();
        _producer.Flush(TimeSpan.FromSeconds(5));
        _producer.Dispose();
        if (_subscription is not null)
        {
            await _subscription.DisposeAsync();
        }

        await _bus.DisposeAsync();
    }

    // ---- publish (delivery report), 4,096 in flight ----

    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw Produce ×4096 + delivery handler")]
    [BenchmarkCategory("publish")]
    public Task RawPublish() => RawProduceAsync(RawPublishTopic);

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishBatchAsync(4096)")]
    [BenchmarkCategory("publish")]
    public Task BusPublishBatch() => AdapterBench.PublishBatchesAsync(_bus, BusPublishTopic, _batches);

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishAsync ×4096 in flight")]
    [BenchmarkCategory("publish")]
    public Task BusPublishConcurrent() => AdapterBench.PublishConcurrentlyAsync(_bus, BusPublishTopic, _batches);

    /// <summary>
    /// Not a baseline: the raw producer sending the adapter's record layout (a fresh 32-character id, as core assigns in header
    /// bus-message-id, the body copied per record, one Message per record), to separate the cost of the layout from
    /// the cost of the adapter's per-message Task machinery.
    /// </summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw Produce ×4096, adapter's record layout (id header, body copy)")]
    [BenchmarkCategory("publish")]
    public Task RawPublishAdapterLayout() => RawProduceAdapterLayoutAsync(RawPublishTopic);

    private async Task RawProduceAdapterLayoutAsync(string topic)
    {
        for (var sent = 0; sent < AdapterBench.Messages; sent += Window)
        {
            _windowDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _outstanding, Window);
            for (var i = 0; i < Window; i++)
            {
                var message = new Message<byte[]?, byte[]>
                {
                    Value = AdapterBench.Payload.AsSpan().ToArray(),
                    Headers = new Headers { { "bus-message-id", System.Text.Encoding.UTF8.GetBytes(Ulid()) } },
                };
                _producer.Produce(topic, message, _onDelivered);
            }

            await _windowDone.Task;
        }
    }

    /// <summary>
    /// Not a baseline: the raw producer's Task API with the adapter's record layout, 4,096 <c>ProduceAsync</c> started
    /// before any is awaited, each awaited in turn: the like of the bus's one-by-one row, since each call completes a
    /// Task of its own (which Confluent.Kafka completes off its delivery-report thread), where the baseline's callback
    /// completes nothing per message.
    /// </summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw ProduceAsync ×4096 in flight, adapter's record layout")]
    [BenchmarkCategory("publish")]
    public async Task RawProduceAsyncAdapterLayout()
    {
        var pending = new Task[Window];
        for (var sent = 0; sent < AdapterBench.Messages; sent += Window)
        {
            for (var i = 0; i < Window; i++)
            {
                pending[i] = _producer.ProduceAsync(RawPublishTopic, new Message<byte[]?, byte[]>
                {
                    Value = AdapterBench.Payload.AsSpan().ToArray(),
                    Headers = new Headers { { "bus-message-id", System.Text.Encoding.UTF8.GetBytes(Ulid()) } },
                });
            }

            for (var i = 0; i < Window; i++)
            {
                await pending[i];
            }
        }
    }

    private static string Ulid() => AdapterBench.NewMessageId(); // 32 hex characters, like core's MessageIds.New()

    // ---- publish → consume → ack ----

    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw Produce ×4096 → Consume + StoreOffset")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEnd()
    {
        await RawProduceAsync(RawE2ETopic);
        await _allReceived.Task;
    }

    /// <summary>Not a baseline: the raw end to end with the adapter's record layout (see <see cref="RawPublishAdapterLayout"/>).</summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw Produce ×4096 → Consume + StoreOffset, adapter's record layout")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEndAdapterLayout()
    {
        await RawProduceAdapterLayoutAsync(RawE2ETopic);
        await _allReceived.Task;
    }

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishBatchAsync(4096) → subscription + ack")]
    [BenchmarkCategory("end-to-end")]
    public async Task BusEndToEnd()
    {
        await AdapterBench.PublishBatchesAsync(_bus, BusE2ETopic, _batches);

        await _handled.AllHandled;
    }

    private async Task RawProduceAsync(string topic)
    {
        var message = new Message<byte[]?, byte[]> { Value = AdapterBench.Payload };
        for (var sent = 0; sent < AdapterBench.Messages; sent += Window)
        {
            _windowDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _outstanding, Window);
            for (var i = 0; i < Window; i++)
            {
                _producer.Produce(topic, message, _onDelivered);
            }

            await _windowDone.Task;
        }
    }

    private void RawConsumeLoop()
    {
        while (!_stop.IsCancellationRequested)
        {
            var result = _consumer.Consume(TimeSpan.FromMilliseconds(50));
            if (result?.Message is null)
            {
                continue;
            }

            _consumer.StoreOffset(result);
            if (Interlocked.Increment(ref _rawReceived) == AdapterBench.Messages)
            {
                _allReceived.TrySetResult();
            }
        }
    }
}
