using Bus.Conformance;
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
        BusTransports.Register(new DelegatingFactory("test-delete-fails", inner => new DeleteFails(inner, hangs: false)));
        BusTransports.Register(new DelegatingFactory("test-delete-hangs", inner => new DeleteFails(inner, hangs: true)));
    }

    [Theory]
    [InlineData("test-delete-fails")]
    [InlineData("test-delete-hangs")]
    public async Task A_cleanup_that_fails_is_logged_and_leaves_the_result_alone(string scheme)
    {
        using var logs = new FakeLoggerProvider();
        using var loggerFactory = LoggerFactory.Create(logging => logging.AddProvider(logs));
        // TimeoutScale 0.25: the cleanup gives up after 5 s (20 s × 0.25); the case's own waits stay at 2.5 s.
        var backend = new ConformanceBackend { Name = scheme, Target = "embedded", Url = scheme + "://", TimeoutScale = 0.25, LoggerFactory = loggerFactory };
        var roundTrip = ConformanceCatalogue.All.Single(c => c.Category == "delivery" && c.Name == "round_trip");

        var result = await ConformanceRunner.RunAsync(backend, roundTrip).WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(CaseOutcome.Passed, result.Outcome);
        var warnings = logs.Collector.GetSnapshot().Where(e => e.Id.Id == 5001).ToList();
        Assert.NotEmpty(warnings);
        Assert.All(warnings, e => Assert.Contains("round_trip", e.Message, StringComparison.Ordinal));
    }

    /// <summary>memory://, except that deleting a topic fails (or never completes until cancelled).</summary>
    private sealed class DeleteFails(MessageTransport inner, bool hangs) : DelegatingTransport(inner)
    {
        public override async ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
        {
            if (hangs)
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }

            throw new InvalidOperationException("the broker refused to delete " + topic.Name);
        }
    }
}
