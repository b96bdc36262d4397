namespace Bus.Conformance.Brokers.Internal;

/// <summary>A broker someone else runs, named by <c>BUS_TEST_NAME_URL</c>: checked with the probe, never controlled.</summary>
internal sealed class EndpointBrokerFixture(BrokerBackend backend, Uri uri) : BrokerFixture(backend.Kind)
{
    private string? _version;

    /// <inheritdoc />
    public override Uri ConnectionUri => uri;

    /// <inheritdoc />
    public override string Target => $"endpoint from {backend.UrlVariable} ({_version ?? "not checked yet"})";

    /// <inheritdoc />
    public override bool CanControlLifecycle => false;

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken = default)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(30));
        Exception? last = null;
        while (!timeout.IsCancellationRequested)
        {
            try
            {
                _version = await backend.ProbeAsync(uri, Endpoints, timeout.Token).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                last = e;
            }

            try
            {
                await Task.Delay(500, timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
            }
        }

        cancellationToken.ThrowIfCancellationRequested();
        throw new BrokerUnavailableException(
            Kind,
            $"the endpoint from {backend.UrlVariable} ({Redact(uri)}) did not answer within 30 s: {last?.GetType().Name}: {last?.Message}",
            innerException: last);
    }

    /// <inheritdoc />
    public override Task StopAsync(CancellationToken cancellationToken = default) => throw NotControlled();

    /// <inheritdoc />
    public override Task StartAgainAsync(CancellationToken cancellationToken = default) => throw NotControlled();

    /// <inheritdoc />
    public override Task PauseAsync(CancellationToken cancellationToken = default) => throw NotControlled();

    /// <inheritdoc />
    public override Task UnpauseAsync(CancellationToken cancellationToken = default) => throw NotControlled();

    /// <inheritdoc />
    public override Task<string> ExecAsync(IReadOnlyList<string> command, CancellationToken cancellationToken = default) => throw NotControlled();

    /// <inheritdoc />
    public override Task<string> GetLogTailAsync(int lines = 50, CancellationToken cancellationToken = default) =>
        Task.FromResult($"(no log: the broker at {backend.UrlVariable} is not run by the tests)");

    /// <inheritdoc />
    public override ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private NotSupportedException NotControlled() =>
        new($"{backend.DisplayName} from {backend.UrlVariable} is run by someone else: the tests cannot stop, start or pause it.");

    private static string Redact(Uri uri) =>
        string.IsNullOrEmpty(uri.UserInfo) ? uri.ToString() : uri.ToString().Replace(uri.UserInfo + "@", "***@", StringComparison.Ordinal);
}
