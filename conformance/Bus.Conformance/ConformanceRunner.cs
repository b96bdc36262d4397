using System.Diagnostics;
using Microsoft.Extensions.Logging;

namespace Bus.Conformance;

/// <summary>Runs catalogue cases against a backend.</summary>
public static class ConformanceRunner
{
    /// <summary>Runs one case: unsupported (by declaration), passed or failed. Never throws for a case failure.</summary>
    /// <param name="backend">The backend.</param>
    /// <param name="conformanceCase">The case.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    public static async Task<CaseResult> RunAsync(ConformanceBackend backend, ConformanceCase conformanceCase, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(backend);
        ArgumentNullException.ThrowIfNull(conformanceCase);
        var empty = new Dictionary<string, long>();
        if (conformanceCase.ExplainNotRun(backend.Capabilities, backend.NotVerifiable, backend.Target) is { } why)
        {
            return new CaseResult(conformanceCase.Name, conformanceCase.Category, CaseOutcome.Unsupported, why, 0, empty);
        }

        var watch = Stopwatch.StartNew();
        var caseTimeout = TimeSpan.FromSeconds(45 * backend.TimeoutScale);
        IMessageBus? bus = null;
        CaseContext? context = null;
        try
        {
            bus = MessageBus.Create(backend.CreateOptions(), backend.LoggerFactory);
            context = new CaseContext(backend, bus, conformanceCase.Name);
            await conformanceCase.Run(context).WaitAsync(caseTimeout, cancellationToken).ConfigureAwait(false);
            var notes = PassNotes(context, conformanceCase);
            return new CaseResult(conformanceCase.Name, conformanceCase.Category, CaseOutcome.Passed, notes, watch.ElapsedMilliseconds, Snapshot(context));
        }
        catch (CaseFailedException failed)
        {
            return Failed(failed.Message);
        }
        catch (TimeoutException) when (!cancellationToken.IsCancellationRequested)
        {
            return Failed($"case did not finish within {caseTimeout.TotalSeconds:0} s; {context?.WhereItWas}");
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return Failed($"{ex.GetType().Name}: {ex.Message}");
        }
        finally
        {
            var closed = true;
            if (bus is not null)
            {
                try
                {
                    await bus.DisposeAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(15), CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception)
                {
                    // A bus that cannot close is the case's problem only if the case itself failed; the result stands.
                    closed = false;
                }
            }

            // Not while a bus that did not close may still have consumers, which could recreate what is deleted.
            if (context is not null && closed)
            {
                await DeleteTopicsMadeAsync(backend, context, cancellationToken).ConfigureAwait(false);
            }
        }

        CaseResult Failed(string reason)
            => new(conformanceCase.Name, conformanceCase.Category, CaseOutcome.Failed, reason, watch.ElapsedMilliseconds, context is null ? empty : Snapshot(context));
    }

    /// <summary>
    /// Deletes the topics a case made, with their dead-letter topics and the case's groups, so that runs against a
    /// shared broker (a user's CI) leave nothing behind. Through a bus of its own, after the case's bus has closed:
    /// no consumer of the case is left to recreate what is deleted. Best effort: a failure is logged, and never
    /// changes the case's result.
    /// </summary>
    private static async Task DeleteTopicsMadeAsync(ConformanceBackend backend, CaseContext context, CancellationToken cancellationToken)
    {
        var topics = context.TopicsMade;
        if (topics.Count == 0)
        {
            return;
        }

        var groups = context.GroupsMade;
        var logger = backend.LoggerFactory?.CreateLogger("Bus.Conformance.Cleanup") ?? Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        var limit = TimeSpan.FromSeconds(20 * backend.TimeoutScale);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(limit);
        MessageBus? bus = null;
        try
        {
            bus = MessageBus.Create(backend.CreateOptions(), backend.LoggerFactory);
            foreach (var topic in topics)
            {
                try
                {
                    await bus.DeleteTopicAsync(topic, groups, timeout.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is BusException or OperationCanceledException)
                {
                    Log.TopicNotDeleted(logger, topic, context.CaseName, backend.Name, ex);
                    if (timeout.IsCancellationRequested)
                    {
                        break; // the rest would fail the same way
                    }
                }
            }
        }
        catch (Exception ex) when (ex is BusException or OperationCanceledException)
        {
            Log.TopicNotDeleted(logger, string.Join(", ", topics), context.CaseName, backend.Name, ex);
        }
        finally
        {
            if (bus is not null)
            {
                try
                {
                    await bus.DisposeAsync().AsTask().WaitAsync(limit, CancellationToken.None).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is BusException or TimeoutException or OperationCanceledException)
                {
                    Log.TopicNotDeleted(logger, string.Join(", ", topics), context.CaseName, backend.Name, ex);
                }
            }
        }
    }

    /// <summary>Runs every case of the catalogue (or those given), one after another.</summary>
    /// <param name="backend">The backend.</param>
    /// <param name="cases">The cases; the whole catalogue by default.</param>
    /// <param name="progress">Told after each case.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    public static async Task<BackendReport> RunAllAsync(ConformanceBackend backend, IEnumerable<ConformanceCase>? cases = null, IProgress<CaseResult>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(backend);
        var results = new List<CaseResult>();
        foreach (var conformanceCase in cases ?? ConformanceCatalogue.All)
        {
            var result = await RunAsync(backend, conformanceCase, cancellationToken).ConfigureAwait(false);
            results.Add(result);
            progress?.Report(result);
        }

        return new BackendReport(backend.Name, backend.Target, DateTimeOffset.UtcNow, results);
    }

    /// <summary>
    /// The case's own remarks plus, for each feature the case needs that the backend provides by emulation, the
    /// backend's remark on how: a pass that relied on emulation says so in the matrix.
    /// </summary>
    private static string? PassNotes(CaseContext context, ConformanceCase conformanceCase)
    {
        var notes = new List<string>(context.Notes);
        var capabilities = context.Capabilities;
        foreach (var feature in Enum.GetValues<BusFeatures>())
        {
            if (feature != BusFeatures.None && (conformanceCase.Requires & feature) == feature && capabilities.Supports(feature) && capabilities.Remarks.TryGetValue(feature, out var how))
            {
                notes.Add($"{feature}: {how}");
            }
        }

        return notes.Count == 0 ? null : string.Join("; ", notes);
    }

    private static Dictionary<string, long> Snapshot(CaseContext context) => new(context.Counts, StringComparer.Ordinal);
}

/// <summary>One backend's row of the matrix.</summary>
/// <param name="Backend">The backend's name.</param>
/// <param name="Target">What it ran against.</param>
/// <param name="Finished">When the run finished.</param>
/// <param name="Cases">Each case's result.</param>
public sealed record BackendReport(string Backend, string Target, DateTimeOffset Finished, IReadOnlyList<CaseResult> Cases);
