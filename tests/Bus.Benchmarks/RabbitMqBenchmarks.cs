using BenchmarkDotNet.Attributes;
using RabbitMQ.Client;
using RabbitMQ.Client.Events;

namespace Bus.Benchmarks;

/// <summary>
/// Bus.RabbitMq against raw RabbitMQ.Client 7.2.2 on the same broker, 256-byte persistent messages,
/// <see cref="Messages"/> per operation (times and allocations are per message).
/// <list type="bullet">
/// <item>publish: publisher confirms with confirmation tracking (each publish completes when confirmed), 256 in flight
/// (windows of 256, each awaited; no rate limiter). Raw: 256 <c>BasicPublishAsync</c> + <c>Task.WhenAll</c>; Bus:
/// <c>PublishBatchAsync</c> of 256, and 256 <c>PublishAsync</c> started before any is awaited.</item>
/// <item>end to end: the same producer and, concurrently, one consumer with prefetch 256 and one <c>BasicAck</c>
/// (multiple = false) per message. Raw: an <see cref="AsyncEventingBasicConsumer"/> that acks in its handler; Bus: a
/// subscription with MaxInFlight 256, PerKeyOrdering off, a handler that only counts, auto-ack.</item>
/// </list>
/// Topology is identical by construction: the bus declares every exchange and queue (fanout exchange per topic, a
/// quorum group queue with the adapter's arguments) in GlobalSetup, and the raw client publishes to / consumes from
/// the raw topics' exchange and queue. Queues are purged in IterationSetup.
///
/// Broker: a native rabbitmq-server 3.10 on 127.0.0.1 (as root, see ../shared/ENVIRONMENT.md "Backends without Docker":
/// run /usr/lib/rabbitmq/bin/rabbitmq-server with RABBITMQ_CONFIG_FILE (listeners.tcp.default = 127.0.0.1:5672),
/// RABBITMQ_MNESIA_BASE, RABBITMQ_LOG_BASE, RABBITMQ_FEATURE_FLAGS_FILE in a writable folder and
/// RABBITMQ_NODENAME=bench@localhost), then
/// <c>BUS_BENCH_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672 dotnet run -c Release --project tests/Bus.Benchmarks --no-build -- --filter '*RabbitMq*'</c>
/// (that URL is the default).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(AdapterBenchConfig))]
public class RabbitMqBenchmarks
{
    private const int Messages = 10_240;
    private const int Window = 256;
    private const int Prefetch = 256;
    private const string Group = "bench";

    private readonly string _run = AdapterBench.RunId;
    private IConnection _connection = null!;
    private IChannel _publishChannel = null!;
    private IChannel _consumeChannel = null!;
    private MessageBus _bus = null!;
    private ISubscription? _subscription;
    private OutgoingMessage[][] _batches = null!;
    private readonly HandledCounter _handled = new(Messages);
    private int _rawReceived;
    private TaskCompletionSource _allReceived = new();
    private readonly BasicProperties _properties = new() { DeliveryMode = DeliveryModes.Persistent };

    private static string BusUrl => AdapterBench.Url("BUS_BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672");

    private string RawPublishTopic => $"bench-raw-pub-{_run}";
    private string RawE2ETopic => $"bench-raw-e2e-{_run}";
    private string BusPublishTopic => $"bench-bus-pub-{_run}";
    private string BusE2ETopic => $"bench-bus-e2e-{_run}";

    private static string Queue(string topic) => $"{topic}:{Group}";

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _bus = MessageBus.Create(BusUrl);
        await _bus.ConnectAsync();
        foreach (var topic in new[] { RawPublishTopic, RawE2ETopic, BusPublishTopic, BusE2ETopic })
        {
            await _bus.EnsureTopicAsync(topic);
        }

        // The group queues of the publish topics (and of the raw end-to-end topic) exist and stay bound after the
        // consumer that declared them closes.
        foreach (var topic in new[] { RawPublishTopic, RawE2ETopic, BusPublishTopic })
        {
            var declaring = await _bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = Group, MaxInFlight = Prefetch, PerKeyOrdering = false });
            await declaring.DisposeAsync();
        }

        _subscription = await _bus.SubscribeAsync(BusE2ETopic, _handled.HandleAsync, new SubscriptionOptions { Group = Group, MaxInFlight = Prefetch, PerKeyOrdering = false });

        var uri = new Uri(BusUrl);
        var factory = new ConnectionFactory { Uri = new Uri($"amqp://{uri.UserInfo}@{uri.Host}:{(uri.Port > 0 ? uri.Port : 5672)}") };
        _connection = await factory.CreateConnectionAsync("bench-raw");
        _publishChannel = await _connection.CreateChannelAsync(new CreateChannelOptions(publisherConfirmationsEnabled: true, publisherConfirmationTrackingEnabled: true));
        _consumeChannel = await _connection.CreateChannelAsync(new CreateChannelOptions(false, false, consumerDispatchConcurrency: 1));
        await _consumeChannel.BasicQosAsync(0, Prefetch, global: false);
        var consumer = new AsyncEventingBasicConsumer(_consumeChannel);
        consumer.ReceivedAsync += async (_, delivery) =>
        {
            await _consumeChannel.BasicAckAsync(delivery.DeliveryTag, multiple: false);
            if (Interlocked.Increment(ref _rawReceived) == Messages)
            {
                _allReceived.TrySetResult();
            }
        };
        await _consumeChannel.BasicConsumeAsync(Queue(RawE2ETopic), autoAck: false, consumer);
    }

    [IterationSetup]
    public void IterationSetup()
    {
        foreach (var topic in new[] { RawPublishTopic, BusPublishTopic })
        {
            _publishChannel.QueuePurgeAsync(Queue(topic)).GetAwaiter().GetResult();
        }

        _batches = AdapterBench.NewBatches(Window, Messages);
        _handled.Reset();
        _rawReceived = 0;
        _allReceived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        if (_subscription is not null)
        {
            await _subscription.DisposeAsync();
        }

        await _consumeChannel.CloseAsync();
        foreach (var topic in new[] { RawPublishTopic, RawE2ETopic, BusPublishTopic, BusE2ETopic })
        {
            await _publishChannel.QueueDeleteAsync(Queue(topic));
            await _publishChannel.QueueDeleteAsync(Queue(topic + ".dlq").Replace($":{Group}", ":dlq", StringComparison.Ordinal));
            await _publishChannel.ExchangeDeleteAsync(topic);
            await _publishChannel.ExchangeDeleteAsync(topic + ".dlq");
        }

        await _publishChannel.CloseAsync();
        await _connection.CloseAsync();
        await _bus.DisposeAsync();
    }

    // ---- publish (publisher confirms), 256 in flight ----

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages, Description = "raw BasicPublish ×256 confirms in flight")]
    [BenchmarkCategory("publish")]
    public Task RawPublish() => RawProduceAsync(RawPublishTopic);

    [Benchmark(OperationsPerInvoke = Messages, Description = "bus PublishBatchAsync(256)")]
    [BenchmarkCategory("publish")]
    public Task BusPublishBatch() => AdapterBench.PublishBatchesAsync(_bus, BusPublishTopic, _batches);

    [Benchmark(OperationsPerInvoke = Messages, Description = "bus PublishAsync ×256 in flight")]
    [BenchmarkCategory("publish")]
    public Task BusPublishConcurrent() => AdapterBench.PublishConcurrentlyAsync(_bus, BusPublishTopic, _batches);

    // ---- publish → consume → ack ----

    /// <summary>
    /// Not a baseline: raw publishing with the adapter's properties (a 32-character message id and a timestamp per
    /// message), to separate what the broker spends on them from the adapter's own per-message work.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "raw BasicPublish ×256, adapter's properties (id + timestamp)")]
    [BenchmarkCategory("publish")]
    public Task RawPublishAdapterLayout() => RawProduceAsync(RawPublishTopic, adapterLayout: true);

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages, Description = "raw BasicPublish ×256 → consumer prefetch 256 + BasicAck")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEnd()
    {
        await RawProduceAsync(RawE2ETopic);
        await _allReceived.Task;
    }

    /// <summary>Not a baseline: the raw end to end with the adapter's properties (see <see cref="RawPublishAdapterLayout"/>).</summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "raw BasicPublish ×256 → consumer prefetch 256 + BasicAck, adapter's properties")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEndAdapterLayout()
    {
        await RawProduceAsync(RawE2ETopic, adapterLayout: true);
        await _allReceived.Task;
    }

    [Benchmark(OperationsPerInvoke = Messages, Description = "bus PublishBatchAsync(256) → subscription 256 + ack")]
    [BenchmarkCategory("end-to-end")]
    public async Task BusEndToEnd()
    {
        await AdapterBench.PublishBatchesAsync(_bus, BusE2ETopic, _batches);

        await _handled.AllHandled;
    }

    private async Task RawProduceAsync(string exchange, bool adapterLayout = false)
    {
        var pending = new Task[Window];
        ReadOnlyMemory<byte> body = AdapterBench.Payload;
        for (var sent = 0; sent < Messages; sent += Window)
        {
            for (var i = 0; i < Window; i++)
            {
                var properties = adapterLayout
                    ? new BasicProperties { DeliveryMode = DeliveryModes.Persistent, MessageId = AdapterBench.NewMessageId(), Timestamp = new AmqpTimestamp(DateTimeOffset.UtcNow.ToUnixTimeSeconds()) }
                    : _properties;
                pending[i] = _publishChannel.BasicPublishAsync(exchange, "", mandatory: false, properties, body).AsTask();
            }

            await Task.WhenAll(pending);
        }
    }
}
