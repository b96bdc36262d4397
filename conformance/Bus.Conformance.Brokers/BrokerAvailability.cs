using System.Diagnostics.CodeAnalysis;

namespace Bus.Conformance.Brokers;

/// <summary>
/// The outcome of trying to start one broker for a test suite: a running <see cref="BrokerFixture"/>, or why there is
/// none. Made to be held by a suite-wide fixture (an xunit collection fixture, say), so that the broker starts once and
/// each test decides with <see cref="TryGetFixture"/> whether it fails or reports "not run here".
/// </summary>
public sealed class BrokerAvailability : IAsyncDisposable
{
    private BrokerAvailability(BrokerKind kind, bool isExpected, BrokerFixture? fixture, Exception? failure)
    {
        Kind = kind;
        IsExpected = isExpected;
        Fixture = fixture;
        Failure = failure;
    }

    /// <summary>The broker.</summary>
    public BrokerKind Kind { get; }

    /// <summary>Whether the broker must run on this machine (<see cref="BrokerExpectations.IsExpected"/>).</summary>
    public bool IsExpected { get; }

    /// <summary>The started fixture, or <see langword="null"/> when it could not be selected or started.</summary>
    public BrokerFixture? Fixture { get; }

    /// <summary>Why there is no fixture, or <see langword="null"/> when it is running.</summary>
    public Exception? Failure { get; }

    /// <summary>Whether <see cref="Fixture"/> is running.</summary>
    [MemberNotNullWhen(true, nameof(Fixture))]
    [MemberNotNullWhen(false, nameof(Failure))]
    public bool IsRunning => Fixture is not null;

    /// <summary>
    /// One line for reports: <c>RabbitMq: container local/rabbitmq:bookworm (RabbitMQ 3.10.8)</c>, or
    /// <c>Pulsar: not run here: ...</c>, or <c>Kafka: FAILED (expected here): ...</c>.
    /// </summary>
    public string Summary => IsRunning
        ? $"{Kind}: {Fixture.Target}"
        : $"{Kind}: {(IsExpected ? "FAILED (expected here)" : "not run here")}: {Reason}";

    private string Reason => Failure is BrokerUnavailableException unavailable ? unavailable.Reason : $"{Failure?.GetType().Name}: {Failure?.Message}";

    /// <summary>Selects and starts <paramref name="kind"/>; never throws for a broker that cannot start, but records why.</summary>
    /// <param name="kind">The broker.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>The outcome.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> was cancelled.</exception>
    public static async Task<BrokerAvailability> StartAsync(BrokerKind kind, CancellationToken cancellationToken = default)
    {
        bool isExpected;
        try
        {
            isExpected = BrokerExpectations.IsExpected(kind);
        }
        catch (InvalidOperationException e)
        {
            // A broken variable must fail loudly, so count the broker as expected.
            return new BrokerAvailability(kind, isExpected: true, null, e);
        }

        BrokerFixture? fixture = null;
        try
        {
            fixture = await BrokerFixtures.CreateAsync(kind, cancellationToken).ConfigureAwait(false);
            await fixture.StartAsync(cancellationToken).ConfigureAwait(false);
            return new BrokerAvailability(kind, isExpected, fixture, null);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested)
        {
            if (fixture is not null)
            {
                await fixture.DisposeAsync().ConfigureAwait(false);
            }

            return new BrokerAvailability(kind, isExpected, null, e);
        }
    }

    /// <summary>
    /// The running fixture; or, when there is none, throws if the broker is expected here (so the test fails with the
    /// reason and log tail) and returns false with a "not run here" reason otherwise.
    /// </summary>
    /// <param name="fixture">The running fixture, when the method returns true.</param>
    /// <param name="notRunReason">"not run here: ...", when the method returns false.</param>
    /// <returns>Whether the broker is running.</returns>
    /// <exception cref="BrokerUnavailableException">The broker is expected here but did not start.</exception>
    public bool TryGetFixture([NotNullWhen(true)] out BrokerFixture? fixture, [NotNullWhen(false)] out string? notRunReason)
    {
        if (IsRunning)
        {
            fixture = Fixture;
            notRunReason = null;
            return true;
        }

        if (IsExpected)
        {
            throw new BrokerUnavailableException(
                Kind,
                $"expected on this machine ({BrokerExpectations.Variable}) but unavailable: {Reason}",
                (Failure as BrokerUnavailableException)?.LogTail,
                Failure);
        }

        fixture = null;
        notRunReason = $"{Kind}: not run here: {Reason}";
        return false;
    }

    /// <summary>The running fixture.</summary>
    /// <returns>The fixture.</returns>
    /// <exception cref="BrokerUnavailableException">The broker is not running, whether expected or not.</exception>
    public BrokerFixture Require() =>
        TryGetFixture(out var fixture, out var reason) ? fixture : throw new BrokerUnavailableException(Kind, reason);

    /// <summary>Removes the broker's container, if one was started.</summary>
    /// <returns>A task that completes when it is gone.</returns>
    public ValueTask DisposeAsync() => Fixture?.DisposeAsync() ?? ValueTask.CompletedTask;

    /// <inheritdoc />
    public override string ToString() => Summary;
}
