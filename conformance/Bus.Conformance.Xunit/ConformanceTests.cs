using Xunit;

namespace Bus.Conformance.Xunit;

/// <summary>
/// The catalogue as xunit tests, in the style of Watermill's universal suite: a backend's test class derives from
/// this with its fixture and declares <c>public static TheoryData&lt;string&gt; Cases =&gt; ConformanceTests.ApplicableCases(capabilities);</c>.
/// One test per applicable case; the cases the backend's capabilities exclude are reported as unsupported in the
/// matrix by <see cref="Unsupported_cases_are_declared_with_reasons"/>, never as passes or skips.
/// </summary>
/// <param name="fixture">The backend's fixture.</param>
public abstract class ConformanceTests(ConformanceFixture fixture)
{
    /// <summary>The backend's fixture.</summary>
    protected ConformanceFixture Fixture { get; } = fixture;

    /// <summary>The names of the cases that apply to a backend with these capabilities, and that the target can show.</summary>
    /// <param name="capabilities">The backend's declaration.</param>
    /// <param name="notVerifiable">What the target cannot show (see <see cref="ConformanceBackend.NotVerifiable"/>); none by default.</param>
    public static TheoryData<string> ApplicableCases(BackendCapabilities capabilities, IReadOnlyDictionary<BusFeatures, string>? notVerifiable = null)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        var data = new TheoryData<string>();
        foreach (var conformanceCase in ConformanceCatalogue.All.Where(c => c.ExplainNotRun(capabilities, notVerifiable ?? new Dictionary<BusFeatures, string>(), "") is null))
        {
            data.Add(conformanceCase.ToString());
        }

        return data;
    }

    /// <summary>Runs one case; fails with what was seen.</summary>
    /// <param name="name">The case, as <c>category/name</c>.</param>
    [Theory]
#pragma warning disable xUnit1015 // "Cases" is declared by each backend's derived class, where xunit looks first.
    [MemberData("Cases")]
#pragma warning restore xUnit1015
    public async Task Case(string name)
    {
        var result = await ConformanceRunner.RunAsync(Fixture.Backend, ConformanceCatalogue.Get(name));
        Fixture.Record(result);
        Assert.True(result.Outcome == CaseOutcome.Passed, $"{Fixture.Backend.Name} ({Fixture.Backend.Target}) {name}: {result.Reason}");
    }

    /// <summary>
    /// Every case the backend does not run is excluded by a declared capability, or by what its target cannot show,
    /// with a reason.
    /// </summary>
    [Fact]
    public void Unsupported_cases_are_declared_with_reasons()
    {
        var capabilities = Fixture.Backend.Capabilities;
        foreach (var conformanceCase in ConformanceCatalogue.All)
        {
            if (conformanceCase.ExplainNotRun(capabilities, Fixture.Backend.NotVerifiable, Fixture.Backend.Target) is { } why)
            {
                Assert.False(string.IsNullOrWhiteSpace(why));
                Fixture.Record(new CaseResult(conformanceCase.Name, conformanceCase.Category, CaseOutcome.Unsupported, why, 0, new Dictionary<string, long>()));
            }
        }
    }
}
