using System.Collections.Concurrent;
using Xunit;

namespace Bus.Conformance.Xunit;

/// <summary>
/// Starts (or finds) a backend once for a test class, collects every case's result, and writes the backend's row
/// of the matrix when the class is done. A backend that was expected but could not start fails every case.
/// </summary>
public abstract class ConformanceFixture : IAsyncLifetime
{
    private readonly ConcurrentDictionary<string, CaseResult> _results = new(StringComparer.Ordinal);
    private ConformanceBackend? _backend;
    private Exception? _startFailure;

    /// <summary>The backend, once started.</summary>
    /// <exception cref="InvalidOperationException">It failed to start (the message says why, with the broker's log tail).</exception>
    public ConformanceBackend Backend => _backend ?? throw new InvalidOperationException($"The backend did not start: {_startFailure?.Message}", _startFailure);

    /// <summary>Starts the broker and describes it.</summary>
    protected abstract Task<ConformanceBackend> StartAsync();

    /// <summary>Stops the broker. The default does nothing.</summary>
    protected virtual Task StopAsync() => Task.CompletedTask;

    /// <summary>Records a case result for the matrix.</summary>
    /// <param name="result">The result.</param>
    public void Record(CaseResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        _results[result.Name] = result;
    }

    /// <inheritdoc />
    public async Task InitializeAsync()
    {
        try
        {
            _backend = await StartAsync().ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            _startFailure = ex;
        }
    }

    /// <inheritdoc />
    public async Task DisposeAsync()
    {
        try
        {
            if (_backend is { } backend && !_results.IsEmpty)
            {
                var rows = new List<CaseResult>();
                foreach (var conformanceCase in ConformanceCatalogue.All)
                {
                    if (_results.TryGetValue(conformanceCase.Name, out var result))
                    {
                        rows.Add(result);
                    }
                    else if (conformanceCase.ExplainUnsupported(backend.Capabilities) is { } why)
                    {
                        rows.Add(new CaseResult(conformanceCase.Name, conformanceCase.Category, CaseOutcome.Unsupported, why, 0, new Dictionary<string, long>()));
                    }
                }

                MatrixWriter.Write(new BackendReport(backend.Name, backend.Target, DateTimeOffset.UtcNow, rows));
            }
        }
        finally
        {
            await StopAsync().ConfigureAwait(false);
        }
    }
}
