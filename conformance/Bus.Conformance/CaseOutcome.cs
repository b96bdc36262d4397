namespace Bus.Conformance;

/// <summary>What a case showed on a backend.</summary>
public enum CaseOutcome
{
    /// <summary>Every assertion held.</summary>
    Passed,

    /// <summary>An assertion failed, the case timed out, or it threw.</summary>
    Failed,

    /// <summary>The backend's declared capabilities exclude the case; the reason says which and why.</summary>
    Unsupported,
}
