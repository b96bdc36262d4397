namespace Bus.Conformance;

/// <summary>One case of the catalogue: written once, run identically against every backend.</summary>
public sealed class ConformanceCase
{
    /// <summary>Creates a case.</summary>
    /// <param name="name">Unique snake_case name.</param>
    /// <param name="category">delivery, ordering, dlq, replay or errors.</param>
    /// <param name="requires">Features every one of which the backend must declare.</param>
    /// <param name="summary">What it shows, in one line.</param>
    /// <param name="run">The case; throws <see cref="CaseFailedException"/> when an assertion fails.</param>
    public ConformanceCase(string name, string category, BusFeatures requires, string summary, Func<CaseContext, Task> run)
    {
        Name = name;
        Category = category;
        Requires = requires;
        Summary = summary;
        Run = run;
    }

    /// <summary>The case's name.</summary>
    public string Name { get; }

    /// <summary>The category.</summary>
    public string Category { get; }

    /// <summary>Features the case needs.</summary>
    public BusFeatures Requires { get; }

    /// <summary>Alternatively, features of which the backend must declare at least one (<see cref="BusFeatures.None"/>: no such condition).</summary>
    public BusFeatures RequiresAny { get; init; }

    /// <summary>What the case shows.</summary>
    public string Summary { get; }

    /// <summary>The case body.</summary>
    public Func<CaseContext, Task> Run { get; }

    /// <summary>Why the case does not apply to a backend (from its declared capabilities), or <see langword="null"/> if it does.</summary>
    /// <param name="capabilities">The backend's declaration.</param>
    public string? ExplainUnsupported(BackendCapabilities capabilities)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        if (capabilities.ExplainMissing(Requires) is { } missing)
        {
            return missing;
        }

        if (RequiresAny != BusFeatures.None && (capabilities.Features & RequiresAny) == BusFeatures.None)
        {
            return capabilities.ExplainMissing(RequiresAny);
        }

        return null;
    }

    /// <inheritdoc />
    public override string ToString() => $"{Category}/{Name}";

    /// <summary>
    /// Why the case cannot be shown against this target although the backend declares what it needs (see
    /// <see cref="ConformanceBackend.NotVerifiable"/>), or <see langword="null"/>.
    /// </summary>
    /// <param name="capabilities">The backend's declaration.</param>
    /// <param name="notVerifiable">What the target cannot show, with the reasons.</param>
    /// <param name="target">What the run is against.</param>
    public string? ExplainNotVerifiable(BackendCapabilities capabilities, IReadOnlyDictionary<BusFeatures, string> notVerifiable, string target)
    {
        ArgumentNullException.ThrowIfNull(capabilities);
        ArgumentNullException.ThrowIfNull(notVerifiable);
        foreach (var (feature, why) in notVerifiable)
        {
            // Needed: required, or the only declared one of the alternatives.
            var needed = (Requires & feature) != BusFeatures.None
                || ((RequiresAny & feature) != BusFeatures.None && (RequiresAny & capabilities.Features & ~feature) == BusFeatures.None);
            if (needed)
            {
                return $"{feature} is declared, but cannot be verified against {target}: {why}";
            }
        }

        return null;
    }

    /// <summary>
    /// Why the case is not run against this target: a capability its backend does not declare
    /// (<see cref="ExplainUnsupported"/>), or one the target cannot show (<see cref="ExplainNotVerifiable"/>); or
    /// <see langword="null"/>.
    /// </summary>
    /// <param name="capabilities">The backend's declaration.</param>
    /// <param name="notVerifiable">What the target cannot show, with the reasons.</param>
    /// <param name="target">What the run is against.</param>
    public string? ExplainNotRun(BackendCapabilities capabilities, IReadOnlyDictionary<BusFeatures, string> notVerifiable, string target)
        => ExplainUnsupported(capabilities) ?? ExplainNotVerifiable(capabilities, notVerifiable, target);
}
