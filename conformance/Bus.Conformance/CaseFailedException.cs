namespace Bus.Conformance;

/// <summary>A conformance assertion did not hold.</summary>
/// <param name="message">What was expected and what was seen.</param>
public sealed class CaseFailedException(string message) : Exception(message);
