namespace Bus.Conformance;

/// <summary>One case's result on one backend: a row cell of the matrix.</summary>
/// <param name="Name">The case name, e.g. <c>round_trip</c>.</param>
/// <param name="Category">delivery, ordering, dlq, replay or errors.</param>
/// <param name="Outcome">Passed, failed or unsupported.</param>
/// <param name="Reason">Why it failed or is unsupported, or remarks on a pass (emulation, what was not checked).</param>
/// <param name="Milliseconds">How long it ran.</param>
/// <param name="Counts">What the case counted (duplicates, attempts, max concurrency…).</param>
public sealed record CaseResult(string Name, string Category, CaseOutcome Outcome, string? Reason, long Milliseconds, IReadOnlyDictionary<string, long> Counts);
