namespace Bus.Conformance.Brokers;

/// <summary>
/// Which brokers must run on this machine: a suite fails (never skips) when an expected broker cannot start, and
/// reports "not run here: reason" for the others.
/// </summary>
/// <remarks>
/// Read from <c>BUS_TEST_EXPECTED_BACKENDS</c>: a comma-separated list of lower-case names (<c>rabbitmq</c>,
/// <c>redis</c>, <c>nats</c>, <c>mqtt</c>, <c>kafka</c>, <c>sqs</c>, <c>pulsar</c>), or <c>all</c>, or <c>none</c>.
/// Default: <see cref="DefaultExpected"/>, everything except Pulsar, which cannot run on the project's machines.
/// </remarks>
public static class BrokerExpectations
{
    /// <summary>The environment variable read by <see cref="IsExpected"/>.</summary>
    public const string Variable = "BUS_TEST_EXPECTED_BACKENDS";

    /// <summary>The value used when <see cref="Variable"/> is unset or empty.</summary>
    public const string DefaultExpected = "rabbitmq,redis,nats,mqtt,kafka,sqs";

    /// <summary>Whether <paramref name="kind"/> must start on this machine.</summary>
    /// <param name="kind">The broker.</param>
    /// <returns><see langword="true"/> when the broker is listed in <see cref="Variable"/> (or in the default).</returns>
    /// <exception cref="InvalidOperationException">The variable names a broker that does not exist.</exception>
    public static bool IsExpected(BrokerKind kind) => Expected().Contains(kind);

    /// <summary>The brokers that must start on this machine.</summary>
    /// <returns>The set named by <see cref="Variable"/>, or by <see cref="DefaultExpected"/> when it is unset.</returns>
    /// <exception cref="InvalidOperationException">The variable names a broker that does not exist.</exception>
    public static IReadOnlySet<BrokerKind> Expected()
    {
        var value = Environment.GetEnvironmentVariable(Variable);
        return Parse(string.IsNullOrWhiteSpace(value) ? DefaultExpected : value);
    }

    /// <summary>Parses a value in the format of <see cref="Variable"/>.</summary>
    /// <param name="value">Comma-separated lower-case broker names, <c>all</c> or <c>none</c>.</param>
    /// <returns>The brokers named.</returns>
    /// <exception cref="InvalidOperationException">A name is not a broker: a typo must not quietly turn a failure into "not run here".</exception>
    public static IReadOnlySet<BrokerKind> Parse(string value)
    {
        ArgumentNullException.ThrowIfNull(value);
        var result = new HashSet<BrokerKind>();
        foreach (var part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            if (part.Equals("all", StringComparison.OrdinalIgnoreCase))
            {
                result.UnionWith(Enum.GetValues<BrokerKind>());
            }
            else if (part.Equals("none", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            else if (Enum.TryParse<BrokerKind>(part, ignoreCase: true, out var kind) && Enum.IsDefined(kind))
            {
                result.Add(kind);
            }
            else
            {
                throw new InvalidOperationException(
                    $"{Variable} names '{part}', which is not a broker; use {string.Join(", ", Enum.GetNames<BrokerKind>().Select(n => n.ToLowerInvariant()))}, all or none.");
            }
        }

        return result;
    }
}
