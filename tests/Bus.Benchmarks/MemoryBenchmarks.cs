using System.Threading.Channels;
using BenchmarkDotNet.Attributes;
using Bus;

namespace Bus.Benchmarks;

/// <summary>
/// The embedded backend, one producer and one consumer: publish → receive → ack, per message. The baseline is a
/// raw unbounded <see cref="Channel{T}"/> moving the same message objects between two tasks in the same run, the
/// closest "raw client" an in-process backend has. Allocations are per message (OperationsPerInvoke).
/// </summary>
[MemoryDiagnoser]
[SimpleJob(launchCount: 1, warmupCount: 3, iterationCount: 8)]
public class MemoryBenchmarks
{
    private const int Messages = 100_000;
    private static readonly byte[] Payload = new byte[256];
    private OutgoingMessage[][] _batches = null!;
    private MessageBus _bus = null!;
    private MessageConsumer _consumer = null!;
    private ISubscription? _subscription;
    private readonly HandledCounter _handled = new(Messages);
    private readonly HandOffSkeleton _skeleton = new(Messages, consumerTakesLock: true);
    private readonly HandOffSkeleton _singleConsumerSkeleton = new(Messages, consumerTakesLock: false);

    /// <summary>Messages each topic retains for replay: 100,000 is the default, 1,000 a small log.</summary>
    [Params(1_000, 100_000)]
    public int Retention { get; set; }

    [GlobalSetup]
    public async Task SetupAsync()
    {
        _batches = Enumerable.Range(0, Messages / 1000).Select(_ => new OutgoingMessage[1000]).ToArray();
        _bus = MessageBus.Create($"memory://?retention={Retention}");
        _consumer = await _bus.CreateConsumerAsync("pull", new SubscriptionOptions { Group = "bench", MaxInFlight = 1024, PerKeyOrdering = false });
        _subscription = await _bus.SubscribeAsync("push", _handled.HandleAsync, new SubscriptionOptions { Group = "bench", MaxInFlight = 1024, PerKeyOrdering = false });
    }

    [GlobalCleanup]
    public async Task CleanupAsync()
    {
        await _consumer.DisposeAsync();
        await _bus.DisposeAsync();
    }

    [Benchmark(Baseline = true, OperationsPerInvoke = Messages, Description = "raw Channel<T>: write → read")]
    public async Task RawChannel()
    {
        var channel = Channel.CreateUnbounded<OutgoingMessage>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var reader = Task.Run(async () =>
        {
            var count = 0;
            while (count < Messages && await channel.Reader.WaitToReadAsync())
            {
                while (channel.Reader.TryRead(out _))
                {
                    count++;
                }
            }
        });
        for (var i = 0; i < Messages; i++)
        {
            channel.Writer.TryWrite(new OutgoingMessage(Payload) { MessageId = "id" });
        }

        await reader;
    }

    [Benchmark(OperationsPerInvoke = Messages, Description = "memory:// publish → receive → ack (pull)")]
    public async Task PublishReceiveAck()
    {
        var consumer = Task.Run(async () =>
        {
            for (var i = 0; i < Messages; i++)
            {
                if (!_consumer.TryReceive(out var message))
                {
                    message = await _consumer.ReceiveAsync();
                }

                await message.AckAsync();
            }
        });
        for (var i = 0; i < Messages; i++)
        {
            await _bus.PublishAsync("pull", new OutgoingMessage(Payload));
        }

        await consumer;
    }

    /// <summary>
    /// Not end to end: one thread publishes 500 and then receives and acks them, repeatedly. No hand-off between
    /// threads, so this is the per-message work of publish, delivery and ack alone.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "memory:// one thread: publish 500, then receive + ack them")]
    public async Task OneThreadPublishThenReceiveAck()
    {
        for (var round = 0; round < Messages / 500; round++)
        {
            for (var i = 0; i < 500; i++)
            {
                await _bus.PublishAsync("pull", new OutgoingMessage(Payload));
            }

            for (var i = 0; i < 500; i++)
            {
                if (!_consumer.TryReceive(out var message))
                {
                    message = await _consumer.ReceiveAsync();
                }

                await message.AckAsync();
            }
        }
    }

    /// <summary>Not end to end: publishing to a topic no group reads (validation, id, the stored copy, the log).</summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "memory:// one thread: publish to a topic without groups")]
    public async Task OneThreadPublishOnly()
    {
        for (var i = 0; i < Messages; i++)
        {
            await _bus.PublishAsync("unread", new OutgoingMessage(Payload));
        }
    }

    /// <summary>
    /// Not Bus: <see cref="HandOffSkeleton"/>, a subset of what a broker of memory://'s shape does per message (copy,
    /// clock, id, entry, batch hand-off, delivery object, ack), on two threads like <see cref="PublishReceiveAck"/>,
    /// with one lock shared by publisher and consumer as in memory://.
    /// </summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "skeleton, not Bus: broker-shaped hand-off (copy, clock, id, entry → batch, delivery, ack), one lock")]
    public Task SkeletonHandOff() => HandOffAsync(_skeleton);

    /// <summary>
    /// Not Bus: <see cref="SkeletonHandOff"/> with the lock taken by the publisher only; the group's one consumer reads
    /// the queue without it (see <see cref="HandOffSkeleton"/>).
    /// </summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "skeleton, not Bus: the same, the one consumer reading without the publishers' lock")]
    public Task SkeletonHandOffSingleConsumer() => HandOffAsync(_singleConsumerSkeleton);

    private static async Task HandOffAsync(HandOffSkeleton skeleton)
    {
        var consumer = Task.Run(() => skeleton.Consume(Messages));
        for (var i = 0; i < Messages; i++)
        {
            skeleton.Publish(new OutgoingMessage(Payload));
        }

        await consumer;
    }

    /// <summary>Not Bus: <see cref="HandOffSkeleton"/>'s publish alone on one thread (compare <see cref="OneThreadPublishOnly"/>).</summary>
    [Benchmark(OperationsPerInvoke = Messages, Description = "skeleton, not Bus: its publish alone (copy, clock, id, entry), one thread")]
    public void SkeletonPublishOnly()
    {
        for (var i = 0; i < Messages; i++)
        {
            _skeleton.Publish(new OutgoingMessage(Payload));
        }

        _skeleton.Clear();
    }

    [Benchmark(OperationsPerInvoke = Messages, Description = "memory:// publish → handler → auto-ack (push)")]
    public async Task PublishHandle()
    {
        _handled.Reset();
        for (var i = 0; i < Messages; i++)
        {
            await _bus.PublishAsync("push", new OutgoingMessage(Payload));
        }

        await _handled.AllHandled;
    }

    [Benchmark(OperationsPerInvoke = Messages, Description = "memory:// publish batch of 1,000 → handler → auto-ack (push)")]
    public async Task PublishBatchHandle()
    {
        _handled.Reset();
        foreach (var batch in _batches)
        {
            for (var i = 0; i < batch.Length; i++)
            {
                batch[i] = new OutgoingMessage(Payload);
            }

            await _bus.PublishBatchAsync("push", batch);
        }

        await _handled.AllHandled;
    }
}
