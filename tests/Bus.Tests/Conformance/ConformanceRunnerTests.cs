using Bus.Conformance;
using Xunit;

namespace Bus.Tests.Conformance;

/// <summary>How the runner reports a case that runs out of time.</summary>
public class ConformanceRunnerTests
{
    // TimeoutScale 0.02: the case may take 0.9 s (45 s × 0.02), each of its waits 0.2 s.
    private static readonly ConformanceBackend Memory = new() { Name = "memory", Target = "embedded", Url = "memory://", TimeoutScale = 0.02 };

    [Fact]
    public async Task A_case_out_of_time_in_a_call_to_the_bus_says_so()
    {
        var hangs = new ConformanceCase("test/hangs_in_bus", "test", BusFeatures.None, "never returns", async ctx =>
        {
            await using var consumer = await ctx.Bus.CreateConsumerAsync(ctx.Topic("t"), SubscriptionOptions.ForGroup(ctx.Group()));
            await consumer.ReceiveAsync(); // not through the context: no wait of its own, no timeout
        });

        var result = await ConformanceRunner.RunAsync(Memory, hangs);

        Assert.Equal(CaseOutcome.Failed, result.Outcome);
        Assert.Contains("did not finish within 1 s", result.Reason);
        Assert.Contains("in a call to the bus", result.Reason);
    }

    [Fact]
    public async Task A_case_out_of_time_in_one_of_its_waits_names_the_wait()
    {
        var hangs = new ConformanceCase("test/hangs_in_wait", "test", BusFeatures.None, "waits for ever", ctx
            => ctx.WaitUntilAsync(() => false, "the sky to fall", timeout: TimeSpan.FromMinutes(1)));

        var result = await ConformanceRunner.RunAsync(Memory, hangs);

        Assert.Equal(CaseOutcome.Failed, result.Outcome);
        Assert.Contains("it was waiting for the sky to fall", result.Reason);
    }
}
