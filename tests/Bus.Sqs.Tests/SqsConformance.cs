using Bus.Conformance;
using Bus.Conformance.Xunit;
using Bus.Sqs;
using Xunit;

namespace Bus.Sqs.Tests;

/// <summary>
/// The SQS backend: BUS_TEST_SQS_URL if set (LocalStack, ElasticMQ, real AWS; an <c>sqs://</c> URI, whose scheme the
/// FIFO row swaps for <c>sqs-fifo://</c>), else the fauxqs emulator started as a native process here. Results against
/// fauxqs say so in the target string: they are not results from real SQS.
/// </summary>
public abstract class SqsFixtureBase(string scheme, string rowName, double timeoutScale) : ConformanceFixture
{
    private FauxqsServer? _server;

    protected override async Task<ConformanceBackend> StartAsync()
    {
        // Loading Bus.Sqs through its conventional scheme registers both of its factories (sqs and sqs-fifo); core
        // does not know the sqs-fifo scheme by itself.
        _ = BusTransports.Find("sqs");
        var closed = FauxqsServer.ClosedPort();
        var unreachable = $"{scheme}://AKIDEXAMPLE:s3cr3t-Pa55word-zq@127.0.0.1:{closed}?region=us-east-1";
        if (Environment.GetEnvironmentVariable("BUS_TEST_SQS_URL") is { Length: > 0 } url)
        {
            var uri = new UriBuilder(url) { Scheme = scheme }.Uri.ToString();
            return new ConformanceBackend
            {
                Name = rowName,
                Target = $"external endpoint from BUS_TEST_SQS_URL: {Transport.UriRedaction.Redact(new Uri(uri))}",
                Url = uri,
                UnreachableUrl = unreachable,
                TimeoutScale = timeoutScale * 2,
            };
        }

        _server = await FauxqsServer.StartAsync();
        return new ConformanceBackend
        {
            Name = rowName,
            Target = _server.Target,
            Url = _server.Url().Replace("sqs://", scheme + "://", StringComparison.Ordinal),
            UnreachableUrl = unreachable,
            TimeoutScale = timeoutScale,
        };
    }

    protected override async Task StopAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>Standard queues (<c>sqs://</c>).</summary>
public sealed class SqsFixture() : SqsFixtureBase("sqs", "sqs", 1.5);

/// <summary>
/// Every topic FIFO (<c>sqs-fifo://</c>). fauxqs returns at most one message per message group per receive (real SQS
/// returns up to 10 of one group), so a single-key stream is consumed one round trip per message here: the timeouts
/// are scaled for that. The adapter's ordering does not depend on it (it hands out one message per group either way).
/// </summary>
public sealed class SqsFifoFixture() : SqsFixtureBase("sqs-fifo", "sqs-fifo", 3);

/// <summary>The whole catalogue against SQS standard queues (the fauxqs emulator here, unless BUS_TEST_SQS_URL says otherwise).</summary>
public sealed class SqsConformance(SqsFixture fixture) : ConformanceTests(fixture), IClassFixture<SqsFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(SqsTransportFactory.DeclaredCapabilities);
}

/// <summary>The whole catalogue against SQS FIFO queues (the fauxqs emulator here, unless BUS_TEST_SQS_URL says otherwise).</summary>
public sealed class SqsFifoConformance(SqsFifoFixture fixture) : ConformanceTests(fixture), IClassFixture<SqsFifoFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(SqsFifoTransportFactory.DeclaredCapabilities);
}
