using System.Globalization;
using Docker.DotNet;
using Docker.DotNet.Models;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Images;
using Microsoft.Extensions.Logging.Abstractions;
using Polly;
using Polly.Retry;

namespace Bus.Conformance.Brokers.Internal;

/// <summary>A broker in a container this fixture creates, on fixed host ports bound to 127.0.0.1, and removes again.</summary>
internal sealed class ContainerBrokerFixture(BrokerBackend backend, string image, bool allowPull) : BrokerFixture(backend.Kind)
{
    private const string Host = DockerHost.Loopback;
    private const int StartAttempts = 3;
    private static readonly TimeSpan PullAllowance = TimeSpan.FromMinutes(10);

    private readonly SemaphoreSlim _gate = new(1, 1);
    private IContainer? _container;
    private string? _containerId;
    private Uri? _connectionUri;
    private IReadOnlyDictionary<string, Uri> _endpoints = new Dictionary<string, Uri>();
    private string? _version;
    private bool _disposed;

    /// <inheritdoc />
    public override Uri ConnectionUri => _connectionUri ?? throw new InvalidOperationException($"The {backend.DisplayName} fixture has not been started.");

    /// <inheritdoc />
    public override IReadOnlyDictionary<string, Uri> Endpoints => _endpoints;

    /// <inheritdoc />
    public override string Target => $"container {image} ({_version ?? "not started"})";

    /// <inheritdoc />
    public override bool CanControlLifecycle => true;

    /// <inheritdoc />
    public override async Task StartAsync(CancellationToken cancellationToken = default)
    {
        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_container is not null)
            {
                throw new InvalidOperationException($"The {backend.DisplayName} fixture was already started.");
            }

            await DockerHost.EnsureStaleContainersRemovedAsync(cancellationToken).ConfigureAwait(false);
            // A first start in official mode may pull the image, which the broker's own startup timeout does not cover.
            var startTimeout = allowPull ? backend.StartupTimeout + PullAllowance : backend.StartupTimeout;
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(startTimeout);
            try
            {
                await CreateAndStartAsync(timeout.Token).ConfigureAwait(false);
                await WaitUntilReadyAsync("start", timeout.Token, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception e)
            {
                var tail = _container is null ? null : await GetLogTailCoreAsync(50).ConfigureAwait(false);
                await RemoveAsync(quiet: true).ConfigureAwait(false);
                if (cancellationToken.IsCancellationRequested)
                {
                    throw;
                }

                throw e as BrokerUnavailableException ?? new BrokerUnavailableException(
                    Kind,
                    timeout.IsCancellationRequested
                        ? $"container {image} did not start within {startTimeout.TotalSeconds:0} s"
                        : $"container {image} did not start: {e.Message}",
                    tail,
                    e);
            }
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <inheritdoc />
    public override async Task StopAsync(CancellationToken cancellationToken = default)
    {
        var container = RequireStarted();
        await container.StopAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override async Task StartAgainAsync(CancellationToken cancellationToken = default)
    {
        var container = RequireStarted();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(backend.StartupTimeout);
        await container.StartAsync(timeout.Token).ConfigureAwait(false);
        await WaitUntilReadyAsync("start again", timeout.Token, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// runc now and then gives up freezing a busy container ("OCI runtime pause failed: unable to freeze", seen once in
    /// about 15 CI runs here; moby/moby#48205) and leaves it running; another attempt a moment later succeeds.
    /// </summary>
    private static readonly ResiliencePipeline PauseRetry = new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<DockerApiException>(ex => ex.Message.Contains("unable to freeze", StringComparison.Ordinal)),
            MaxRetryAttempts = 4,
            Delay = TimeSpan.FromMilliseconds(250),
        })
        .Build();

    /// <inheritdoc />
    public override async Task PauseAsync(CancellationToken cancellationToken = default)
    {
        var container = RequireStarted();
        await PauseRetry.ExecuteAsync(static async (started, token) => await started.PauseAsync(token).ConfigureAwait(false), container, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override async Task UnpauseAsync(CancellationToken cancellationToken = default)
    {
        var container = RequireStarted();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(backend.StartupTimeout);
        await container.UnpauseAsync(timeout.Token).ConfigureAwait(false);
        await WaitUntilReadyAsync("unpause", timeout.Token, cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public override async Task<string> ExecAsync(IReadOnlyList<string> command, CancellationToken cancellationToken = default)
    {
        var container = RequireStarted();
        var result = await container.ExecAsync([.. command], cancellationToken).ConfigureAwait(false);
        return result.ExitCode == 0
            ? result.Stdout
            : throw new InvalidOperationException($"'{string.Join(' ', command)}' in {image} exited with {result.ExitCode}: {result.Stdout}{result.Stderr}");
    }

    /// <inheritdoc />
    public override Task<string> GetLogTailAsync(int lines = 50, CancellationToken cancellationToken = default) =>
        GetLogTailCoreAsync(lines, cancellationToken);

    /// <inheritdoc />
    public override async ValueTask DisposeAsync()
    {
        await _gate.WaitAsync().ConfigureAwait(false);
        try
        {
            _disposed = true;
            await RemoveAsync(quiet: false).ConfigureAwait(false);
        }
        finally
        {
            _gate.Release();
        }
    }

    private IContainer RequireStarted()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        return _container ?? throw new InvalidOperationException($"The {backend.DisplayName} fixture has not been started.");
    }

    private async Task CreateAndStartAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var hostPorts = HostPorts.Allocate(backend.ContainerPorts.Keys);
            _container = Build(backend.DescribeContainer(image, hostPorts));
            try
            {
                await StartWatchingForExitAsync(_container, cancellationToken).ConfigureAwait(false);
                _containerId = _container.Id;
                _connectionUri = backend.CreateConnectionUri(Host, hostPorts);
                _endpoints = backend.CreateEndpoints(Host, hostPorts);
                return;
            }
            catch (Exception e) when (attempt < StartAttempts && IsPortConflict(e))
            {
                // Another process took a port between choosing and binding it: choose again.
                await RemoveAsync(quiet: true).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// Starts the container, but gives up as soon as it has exited: the container library would otherwise wait for
    /// port bindings that an exited container never gets.
    /// </summary>
    private async Task StartWatchingForExitAsync(IContainer container, CancellationToken cancellationToken)
    {
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var start = container.StartAsync(stop.Token);
        while (await Task.WhenAny(start, Task.Delay(500, cancellationToken)).ConfigureAwait(false) != start)
        {
            var id = TryGetId(container);
            State? state;
            try
            {
                state = id is null ? null : await DockerHost.GetStateAsync(id, cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                // One slow answer from a busy daemon says nothing about the container: ask again on the next round.
                continue;
            }

            if (state is { Running: false, Restarting: false, Paused: false } && state.Status is "exited" or "dead")
            {
                _containerId = id;
                await stop.CancelAsync().ConfigureAwait(false);
                try
                {
                    await start.ConfigureAwait(false);
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // Cancelled by us: the exit is what to report.
                }

                throw new BrokerUnavailableException(
                    Kind,
                    $"container {image} exited during start (exit code {state.ExitCode.ToString(CultureInfo.InvariantCulture)})",
                    await GetLogTailCoreAsync(50).ConfigureAwait(false));
            }
        }

        await start.ConfigureAwait(false);
    }

    private IContainer Build(ContainerSpec spec)
    {
        var builder = new ContainerBuilder(spec.Image)
            .WithName($"bus-{backend.VariableName.ToLowerInvariant()}-{Guid.NewGuid():N}")
            .WithLabel(DockerHost.ProcessLabel, Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
            .WithLabel(DockerHost.KindLabel, Kind.ToString())
            .WithImagePullPolicy(allowPull ? PullPolicy.Missing : PullPolicy.Never)
            .WithLogger(NullLogger.Instance)
            .WithCreateParameterModifier(DockerHost.LoopbackOnlyWithoutHealthcheck);

        foreach (var (hostPort, containerPort) in spec.PortBindings)
        {
            builder = builder.WithPortBinding(hostPort, containerPort);
        }

        foreach (var (name, value) in spec.Environment)
        {
            builder = builder.WithEnvironment(name, value);
        }

        foreach (var (path, content) in spec.Files)
        {
            builder = builder.WithResourceMapping(content, path);
        }

        if (spec.Command.Count > 0)
        {
            builder = builder.WithCommand([.. spec.Command]);
        }

        return builder.Build();
    }

    private async Task WaitUntilReadyAsync(string what, CancellationToken timeoutToken, CancellationToken callerToken)
    {
        var connectionUri = ConnectionUri;
        var delay = TimeSpan.FromMilliseconds(100);
        Exception? last = null;
        var started = DateTime.UtcNow;
        while (true)
        {
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(timeoutToken);
                attempt.CancelAfter(TimeSpan.FromSeconds(5));
                _version = await backend.ProbeAsync(connectionUri, _endpoints, attempt.Token).ConfigureAwait(false);
                return;
            }
            catch (Exception e) when (!callerToken.IsCancellationRequested)
            {
                last = e;
            }

            var state = _containerId is null ? null : await DockerHost.GetStateAsync(_containerId, CancellationToken.None).ConfigureAwait(false);
            if (state is null || !(state.Running || state.Paused || state.Restarting))
            {
                throw new BrokerUnavailableException(
                    Kind,
                    $"container {image} stopped during {what} (state {state?.Status ?? "removed"}, exit code {state?.ExitCode.ToString(CultureInfo.InvariantCulture) ?? "?"})",
                    await GetLogTailCoreAsync(50).ConfigureAwait(false));
            }

            if (timeoutToken.IsCancellationRequested)
            {
                throw new BrokerUnavailableException(
                    Kind,
                    $"container {image} did not answer on {connectionUri} within {(DateTime.UtcNow - started).TotalSeconds:0} s of {what}: {last.GetType().Name}: {last.Message}",
                    await GetLogTailCoreAsync(50).ConfigureAwait(false),
                    last);
            }

            try
            {
                await Task.Delay(delay, timeoutToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (!callerToken.IsCancellationRequested)
            {
                // The timeout passed while waiting: the next round reports it.
            }

            delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 1000));
        }
    }

    private async Task<string> GetLogTailCoreAsync(int lines, CancellationToken cancellationToken = default)
    {
        if (_container is null)
        {
            return "(no container)";
        }

        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(10));
            var (stdout, stderr) = await _container.GetLogsAsync(timestampsEnabled: false, ct: timeout.Token).ConfigureAwait(false);
            return string.Join(Environment.NewLine, new[] { ("stdout", stdout), ("stderr", stderr) }
                .Where(s => !string.IsNullOrWhiteSpace(s.Item2))
                .Select(s => $"[{s.Item1}]{Environment.NewLine}{Tail(s.Item2, lines)}"))
                is { Length: > 0 } text ? text : "(the container logged nothing)";
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return $"(no log: {e.GetType().Name}: {e.Message})";
        }
    }

    private static string Tail(string text, int lines)
    {
        var all = text.Replace("\r\n", "\n", StringComparison.Ordinal).TrimEnd('\n').Split('\n');
        return string.Join(Environment.NewLine, all.Skip(Math.Max(0, all.Length - lines)));
    }

    private async Task RemoveAsync(bool quiet)
    {
        var container = _container;
        var id = _containerId;
        _container = null;
        _containerId = null;
        if (container is null)
        {
            return;
        }

        try
        {
            id ??= TryGetId(container);
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await container.DisposeAsync().AsTask().WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Removed below; the container library may already have given up on it.
        }

        if (id is null)
        {
            return;
        }

        try
        {
            // Dispose removes the container only when it knows the session; make sure, with its anonymous volumes.
            await DockerHost.RemoveContainerAsync(id, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception) when (quiet)
        {
            // Cleaning up after a failed start: the start's own exception is the one to report.
        }
    }

    private static string? TryGetId(IContainer container)
    {
        try
        {
            return container.Id;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // Not created yet.
            return null;
        }
    }

    private static bool IsPortConflict(Exception e) =>
        e.ToString() is var text
        && (text.Contains("port is already allocated", StringComparison.OrdinalIgnoreCase)
            || text.Contains("address already in use", StringComparison.OrdinalIgnoreCase));
}
