using Bus.Transport;
using Xunit;

namespace Bus.Tests;

/// <summary>The close budget the adapters share: full waits while the broker answers, short ones once it went silent.</summary>
public class CloseWaitsTests
{
    [Fact]
    public async Task A_step_that_completes_counts_as_answered_and_one_that_does_not_makes_the_broker_silent()
    {
        var waits = new CloseWaits(TimeSpan.FromMilliseconds(50), TimeSpan.Zero);
        Assert.False(waits.BrokerSilent);
        Assert.Equal(waits.Budget, waits.Current);

        Assert.True(await waits.WaitAsync(Task.CompletedTask));
        Assert.False(waits.BrokerSilent);

        var never = new TaskCompletionSource();
        Assert.False(await waits.WaitAsync(never.Task));
        Assert.True(waits.BrokerSilent);
        Assert.Equal(TimeSpan.Zero, waits.Current);
        Assert.False(waits.Unanswered()); // already known: the adapters log the first only

        waits.Answered();
        Assert.False(waits.BrokerSilent);
        Assert.Equal(TimeSpan.FromMilliseconds(50), waits.Current);
        Assert.True(waits.Unanswered());
    }

    [Fact]
    public async Task A_failed_step_is_the_callers_to_observe_and_counts_as_answered()
    {
        var waits = new CloseWaits(TimeSpan.FromSeconds(5), TimeSpan.Zero);
        var failed = Task.FromException(new InvalidOperationException("refused"));
        Assert.True(await waits.WaitAsync(failed));
        Assert.False(waits.BrokerSilent);
        await Assert.ThrowsAsync<InvalidOperationException>(() => failed);
    }

    [Fact]
    public void Budgets_below_zero_are_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new CloseWaits(TimeSpan.FromSeconds(-1), TimeSpan.Zero));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CloseWaits(TimeSpan.Zero, TimeSpan.FromSeconds(-1)));
    }

    [Theory]
    [InlineData(3, 3)]
    [InlineData(30, 5)]
    public void The_close_timeout_is_the_operation_timeout_at_most_five_seconds(int operationSeconds, int expectedSeconds)
    {
        var context = new TransportContext(new Uri("memory://"), new BusOptions { OperationTimeout = TimeSpan.FromSeconds(operationSeconds) }, Microsoft.Extensions.Logging.Abstractions.NullLoggerFactory.Instance);
        Assert.Equal(TimeSpan.FromSeconds(expectedSeconds), context.CloseTimeout);
    }
}
