namespace Bus.Conformance.Brokers;

/// <summary>
/// One broker the tests talk to: a container this fixture started and removes again, or an endpoint someone else runs.
/// Create one with <see cref="BrokerFixtures.CreateAsync"/>, which decides by configuration which of the two it is.
/// </summary>
/// <remarks>
/// The lifecycle controls (<see cref="StopAsync"/>, <see cref="StartAgainAsync"/>, <see cref="RestartAsync"/>,
/// <see cref="PauseAsync"/>, <see cref="UnpauseAsync"/>) work only where <see cref="CanControlLifecycle"/> is true. A
/// broker that comes back keeps its <see cref="ConnectionUri"/>: container fixtures bind fixed host ports chosen when
/// they start. Subclasses implement the members marked abstract; <see cref="RestartAsync"/> is derived from them.
/// </remarks>
public abstract class BrokerFixture : IAsyncDisposable
{
    /// <summary>Creates a fixture for <paramref name="kind"/>.</summary>
    /// <param name="kind">The broker this fixture provides.</param>
    protected BrokerFixture(BrokerKind kind) => Kind = kind;

    /// <summary>The broker this fixture provides.</summary>
    public BrokerKind Kind { get; }

    /// <summary>
    /// Where clients connect, e.g. <c>amqp://guest:guest@127.0.0.1:PORT/%2f</c>, <c>redis://127.0.0.1:PORT</c>,
    /// <c>nats://127.0.0.1:PORT</c>, <c>mqtt://127.0.0.1:PORT</c>; for Pulsar the web service (HTTP/WebSocket) URL.
    /// </summary>
    /// <exception cref="InvalidOperationException">The fixture has not been started.</exception>
    public abstract Uri ConnectionUri { get; }

    /// <summary>
    /// Further named endpoints of the broker, e.g. <c>monitoring</c> for NATS or <c>binary</c> for Pulsar; empty by
    /// default and before the fixture has started.
    /// </summary>
    public virtual IReadOnlyDictionary<string, Uri> Endpoints { get; } = new Dictionary<string, Uri>();

    /// <summary>
    /// What was started, truthfully, for reports: e.g. <c>container local/rabbitmq:bookworm (RabbitMQ 3.10.8)</c> or
    /// <c>endpoint from BUS_TEST_RABBITMQ_URL (RabbitMQ 3.13.7)</c>. The version is the one the running broker reported.
    /// </summary>
    public abstract string Target { get; }

    /// <summary>Whether the stop, start, pause and unpause members work (false for an endpoint run by someone else).</summary>
    public abstract bool CanControlLifecycle { get; }

    /// <summary>Starts the broker (or checks the endpoint) and waits until it is ready, within a bounded startup timeout.</summary>
    /// <param name="cancellationToken">Cancels the start; the container, if any, is removed.</param>
    /// <returns>A task that completes when clients can connect to <see cref="ConnectionUri"/>.</returns>
    /// <exception cref="BrokerUnavailableException">The broker did not start or become ready; the message has its log tail.</exception>
    /// <exception cref="InvalidOperationException">The fixture was already started.</exception>
    public abstract Task StartAsync(CancellationToken cancellationToken = default);

    /// <summary>Stops the broker gracefully; <see cref="StartAgainAsync"/> brings it back on the same URI.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the broker has stopped.</returns>
    /// <exception cref="NotSupportedException"><see cref="CanControlLifecycle"/> is false.</exception>
    public abstract Task StopAsync(CancellationToken cancellationToken = default);

    /// <summary>Starts a stopped broker again, on the same <see cref="ConnectionUri"/>, and waits until it is ready.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the broker is ready again.</returns>
    /// <exception cref="BrokerUnavailableException">The broker did not become ready within its startup timeout.</exception>
    /// <exception cref="NotSupportedException"><see cref="CanControlLifecycle"/> is false.</exception>
    public abstract Task StartAgainAsync(CancellationToken cancellationToken = default);

    /// <summary>Stops the broker and starts it again (<see cref="StopAsync"/>, then <see cref="StartAgainAsync"/>).</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the broker is ready again.</returns>
    /// <exception cref="BrokerUnavailableException">The broker did not become ready within its startup timeout.</exception>
    /// <exception cref="NotSupportedException"><see cref="CanControlLifecycle"/> is false.</exception>
    public virtual async Task RestartAsync(CancellationToken cancellationToken = default)
    {
        await StopAsync(cancellationToken).ConfigureAwait(false);
        await StartAgainAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Freezes the broker's processes: connections stay open but nothing is answered, as with a hung broker or a
    /// network partition.
    /// </summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the broker is frozen.</returns>
    /// <exception cref="NotSupportedException"><see cref="CanControlLifecycle"/> is false.</exception>
    public abstract Task PauseAsync(CancellationToken cancellationToken = default);

    /// <summary>Resumes a paused broker and waits until it answers again.</summary>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>A task that completes when the broker is ready again.</returns>
    /// <exception cref="BrokerUnavailableException">The broker did not answer within its startup timeout.</exception>
    /// <exception cref="NotSupportedException"><see cref="CanControlLifecycle"/> is false.</exception>
    public abstract Task UnpauseAsync(CancellationToken cancellationToken = default);

    /// <summary>
    /// Runs a command inside the broker's container (an administration tool such as <c>rabbitmqctl</c>) and returns
    /// its standard output; a non-zero exit fails with the output.
    /// </summary>
    /// <param name="command">The program and its arguments.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The command's standard output.</returns>
    /// <exception cref="NotSupportedException"><see cref="CanControlLifecycle"/> is false.</exception>
    public abstract Task<string> ExecAsync(IReadOnlyList<string> command, CancellationToken cancellationToken = default);

    /// <summary>The last lines the broker logged (standard output and standard error), for failure messages.</summary>
    /// <param name="lines">How many lines at most; default 50.</param>
    /// <param name="cancellationToken">Cancels the read.</param>
    /// <returns>The lines, or a sentence saying why there are none; never throws for a missing container.</returns>
    public abstract Task<string> GetLogTailAsync(int lines = 50, CancellationToken cancellationToken = default);

    /// <summary>Removes the container, if this fixture started one; safe to call more than once.</summary>
    /// <returns>A task that completes when the container is gone.</returns>
    public abstract ValueTask DisposeAsync();

    /// <inheritdoc />
    public override string ToString() => $"{Kind}: {Target}";
}
