using System.Threading.Channels;
using Bus.Conformance;
using Bus.Memory;
using Bus.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Testing;
using Xunit;

namespace Bus.Tests.Conformance;

/// <summary>
/// The runner deletes each case's topics after the case; a broker that refuses or never answers must leave the case's
/// result as it was, be logged, and not hold the run up beyond the cleanup's bound.
/// </summary>
public class CleanupTests
{
    static CleanupTests()
    {
        BusTransports.Register(new DeleteFailsFactory("test-delete-fails", hangs: false));
        BusTransports.Register(new DeleteFailsFactory("test-delete-hangs", hangs: true));
    }

    [Theory]
    [InlineData("test-delete-fails")]
    [InlineData("test-delete-hangs")]
    public async Task A_cleanup_that_fails_is_logged_and_leaves_the_result_alone(string scheme)
    {
        using var logs = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(logs));
        // TimeoutScale 0.05: the cleanup gives up after 1 s (20 s × 0.05).
        var backend = new ConformanceBackend { Name = scheme, Target = "embedded", Url = scheme + "://", TimeoutScale = 0.05, LoggerFactory = loggerFactory };
        var roundTrip = ConformanceCatalogue.All.Single(c => c.Category == "delivery" && c.Name == "round_trip");

        var result = await ConformanceRunner.RunAsync(backend, roundTrip).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(CaseOutcome.Passed, result.Outcome);
        var warnings = logs.Collector.GetSnapshot().Where(e => e.Id.Id == 5001).ToList();
        Assert.NotEmpty(warnings);
        Assert.All(warnings, e => Assert.Contains("round_trip", e.Message, StringComparison.Ordinal));
    }

    /// <summary>memory://, except that deleting a topic fails (or never completes until cancelled).</summary>
    private sealed class DeleteFailsFactory(string scheme, bool hangs) : IBusTransportFactory
    {
        private readonly MemoryTransportFactory _memory = new();

        public string Backend => "memory";

        public IReadOnlyList<string> Schemes { get; } = [scheme];

        public BackendCapabilities Capabilities => _memory.Capabilities;

        public MessageTransport Create(TransportContext context) => new DeleteFails(_memory.Create(context), hangs);
    }

    private sealed class DeleteFails(MessageTransport inner, bool hangs) : MessageTransport
    {
        public override BackendCapabilities Capabilities => inner.Capabilities;

        public override bool BoundsPublishTime => inner.BoundsPublishTime;

        public override ValueTask ConnectAsync(CancellationToken cancellationToken) => inner.ConnectAsync(cancellationToken);

        public override void RegisterPrivateTopic(string topic) => inner.RegisterPrivateTopic(topic);

        public override string? ValidateTopicName(string topic) => inner.ValidateTopicName(topic);

        public override string GetDeadLetterTopic(string topic) => inner.GetDeadLetterTopic(topic);

        public override long MeasureMessage(OutgoingMessage message) => inner.MeasureMessage(message);

        public override ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken) => inner.EnsureTopicAsync(topic, cancellationToken);

        public override async ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
        {
            if (hangs)
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }

            throw new InvalidOperationException("the broker refused to delete " + topic.Name);
        }

        public override ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken) => inner.PublishAsync(topic, message, cancellationToken);

        public override ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, CancellationToken cancellationToken) => inner.PublishBatchAsync(topic, messages, cancellationToken);

        public override ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken) => inner.OpenReceiverAsync(topic, options, cancellationToken);

        public override ValueTask DeadLetterAsync(TransportReceiver receiver, ReceivedMessage message, string deadLetterTopic, OutgoingMessage copy, CancellationToken cancellationToken)
            => inner.DeadLetterAsync(receiver, message, deadLetterTopic, copy, cancellationToken);

        public override ValueTask DisposeAsync() => inner.DisposeAsync();
    }
}
