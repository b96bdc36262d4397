using Bus.Conformance.Cases;

namespace Bus.Conformance;

/// <summary>The catalogue: every case, in a fixed order. See shared/CONFORMANCE.md for what each must show.</summary>
public static class ConformanceCatalogue
{
    /// <summary>Every case.</summary>
    public static IReadOnlyList<ConformanceCase> All { get; } =
    [
        .. DeliveryCases.All,
        .. OrderingCases.All,
        .. DeadLetterCases.All,
        .. ReplayCases.All,
        .. ErrorCases.All,
    ];

    /// <summary>The case with this name (or <c>category/name</c>).</summary>
    /// <param name="name">The case's name.</param>
    /// <exception cref="KeyNotFoundException">No such case.</exception>
    public static ConformanceCase Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return All.FirstOrDefault(c => c.Name == name || c.ToString() == name)
            ?? throw new KeyNotFoundException($"No conformance case named '{name}'.");
    }
}
