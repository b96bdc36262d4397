using System.Collections.Concurrent;
using System.Reflection;
using Amazon.SQS;
using Amazon.SQS.Model;
using Bus.Sqs.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bus.Sqs.Tests;

/// <summary>
/// The FIFO consumer's per-group gating, against a scripted SQS client: real SQS returns several messages of one
/// message group in one receive, which fauxqs never does (it returns one per group), so this path is tested here.
/// </summary>
public sealed class FifoGatingTests
{
    private const string QueueUrl = "http://127.0.0.1:1/000000000000/t_g.fifo";

    private static (SqsReceiver Receiver, ScriptedSqs Sqs) Open(params string[] bodies) => Open(TimeSpan.FromSeconds(30), bodies);

    private static (SqsReceiver Receiver, ScriptedSqs Sqs) Open(TimeSpan ackTimeout, params string[] bodies)
    {
        var sqs = ScriptedSqs.Create();
        sqs.Batches.Enqueue(bodies.Select((body, i) => new Message
        {
            MessageId = $"sqs-{i}",
            ReceiptHandle = $"r{i}",
            Body = body,
            Attributes = new() { ["MessageGroupId"] = "K", ["ApproximateReceiveCount"] = "1", ["SequenceNumber"] = $"{i}" },
        }).ToList());
        var url = "sqs://t:t@127.0.0.1:1?region=us-east-1&wait-seconds=0";
        var settings = SqsSettings.Parse(new TransportContext(new Uri(url), new BusOptions { Url = url }, NullLoggerFactory.Instance));
        var transport = new SqsTransport(settings, (IAmazonSQS)(object)sqs, ownsClient: false, NullLoggerFactory.Instance);
        return (new SqsReceiver(transport, "t.fifo", QueueUrl, new SubscriptionOptions { Group = "g", MaxInFlight = 10, AckTimeout = ackTimeout }), sqs);
    }

    private static async Task<ReceivedMessage?> NextAsync(SqsReceiver receiver, int ms = 300)
    {
        using var timeout = new CancellationTokenSource(ms);
        try
        {
            return await receiver.Deliveries.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    [Fact]
    public async Task One_message_per_group_is_handed_out_and_an_ack_hands_out_the_next()
    {
        var (receiver, _) = Open("K1", "K2", "K3");
        await using var scope = receiver;
        var first = await NextAsync(receiver, 2000);
        Assert.Equal("K1", first!.GetText());
        Assert.Null(await NextAsync(receiver));
        await receiver.AckAsync(first, default);
        var second = await NextAsync(receiver);
        Assert.Equal("K2", second!.GetText());
        await receiver.AckAsync(second, default);
        Assert.Equal("K3", (await NextAsync(receiver))!.GetText());
    }

    [Fact]
    public async Task A_nack_releases_the_messages_held_behind_it_after_its_own_change()
    {
        var (receiver, sqs) = Open("K1", "K2", "K3");
        await using var scope = receiver;
        var first = await NextAsync(receiver, 2000);
        await receiver.NackAsync(first!, TimeSpan.Zero, default);
        Assert.Null(await NextAsync(receiver));
        Assert.Equal(["visibility r0 0", "visibility-batch r1,r2 0"], sqs.Calls.ToArray());
    }

    private static Message Again(int i, string body, int receives) => new()
    {
        MessageId = $"sqs-{i}",
        ReceiptHandle = $"r{i}-{receives}",
        Body = body,
        Attributes = new() { ["MessageGroupId"] = "K", ["ApproximateReceiveCount"] = $"{receives}", ["SequenceNumber"] = $"{i}" },
    };

    [Fact]
    public async Task A_group_delivered_again_after_the_application_kept_its_message_past_the_ack_timeout_is_handed_out()
    {
        var (receiver, sqs) = Open(TimeSpan.FromSeconds(1), "K1", "K2");
        await using var scope = receiver;
        var expired = await NextAsync(receiver, 2000);
        Assert.Equal("K1", expired!.GetText());

        // The application keeps K1 past the ack timeout (the visibility timeout): SQS hands the group out again, from
        // K1, with new receipts. K2 was received twice and never handed out.
        await Task.Delay(TimeSpan.FromMilliseconds(1100));
        sqs.Batches.Enqueue([Again(0, "K1", 2), Again(1, "K2", 2)]);
        var again = await NextAsync(receiver, 2000);
        Assert.NotNull(again);
        Assert.Equal("K1", again.GetText());
        Assert.Equal(2, again.DeliveryCount);

        // The expired delivery settled late hands nothing out: K2 waits for the live delivery of K1.
        await receiver.AckAsync(expired, default);
        Assert.Null(await NextAsync(receiver));
        await receiver.AckAsync(again, default);
        var second = await NextAsync(receiver);
        Assert.Equal("K2", second!.GetText());
        Assert.Equal(1, second.DeliveryCount); // the copy dropped unseen does not count
    }

    [Fact]
    public async Task A_held_message_delivered_again_within_the_ack_timeout_waits_its_turn()
    {
        // K2 waits behind K1, but its visibility timeout started at the receive: it may run out while the application
        // is within its ack timeout, and SQS then returns K2 again. The copies go out one after the other.
        var (receiver, sqs) = Open("K1", "K2");
        await using var scope = receiver;
        var k1 = await NextAsync(receiver, 2000);
        await receiver.AckAsync(k1!, default);
        var k2 = await NextAsync(receiver);
        Assert.Equal("K2", k2!.GetText());
        sqs.Batches.Enqueue([Again(1, "K2", 2)]);
        Assert.Null(await NextAsync(receiver));
        await receiver.AckAsync(k2, default);
        var copy = await NextAsync(receiver);
        Assert.Equal("K2", copy!.GetText());
        Assert.NotEqual(k2.DeliveryTag, copy.DeliveryTag);
    }

    /// <summary>Scripts the few IAmazonSQS calls a receiver makes; anything else throws.</summary>
    public class ScriptedSqs : DispatchProxy
    {
        public ConcurrentQueue<List<Message>> Batches { get; } = new();

        public ConcurrentQueue<string> Calls { get; } = new();

        public static ScriptedSqs Create() => (ScriptedSqs)(object)Create<IAmazonSQS, ScriptedSqs>();

        protected override object? Invoke(MethodInfo? targetMethod, object?[]? args)
        {
            switch (targetMethod!.Name, args is { Length: > 0 } ? args[0] : null)
            {
                case ("ReceiveMessageAsync", ReceiveMessageRequest):
                    return ReceiveAsync();
                case ("DeleteMessageBatchAsync", DeleteMessageBatchRequest delete):
                    Calls.Enqueue("delete " + string.Join(',', delete.Entries.Select(e => e.ReceiptHandle)));
                    return Task.FromResult(new DeleteMessageBatchResponse());
                case ("ChangeMessageVisibilityAsync", ChangeMessageVisibilityRequest change):
                    Calls.Enqueue($"visibility {change.ReceiptHandle} {change.VisibilityTimeout}");
                    return Task.FromResult(new ChangeMessageVisibilityResponse());
                case ("ChangeMessageVisibilityBatchAsync", ChangeMessageVisibilityBatchRequest batch):
                    Calls.Enqueue($"visibility-batch {string.Join(',', batch.Entries.Select(e => e.ReceiptHandle))} {batch.Entries[0].VisibilityTimeout}");
                    return Task.FromResult(new ChangeMessageVisibilityBatchResponse());
                case ("Dispose", _):
                    return null;
                default:
                    throw new NotSupportedException(targetMethod.Name);
            }
        }

        private async Task<ReceiveMessageResponse> ReceiveAsync()
        {
            if (Batches.TryDequeue(out var batch))
            {
                return new ReceiveMessageResponse { Messages = batch };
            }

            await Task.Delay(20);
            return new ReceiveMessageResponse { Messages = [] };
        }
    }
}
