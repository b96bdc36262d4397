using System.Text.RegularExpressions;
using Bus.Transport;

namespace Bus.Sqs.Internal;

/// <summary>What an <c>sqs://</c> URI and the bus settings say, parsed and checked once (no I/O).</summary>
internal sealed partial class SqsSettings
{
    public const string DefaultRegion = "us-east-1";

    private SqsSettings()
    {
    }

    /// <summary>The AWS region (signing region for an endpoint override).</summary>
    public string Region { get; private init; } = DefaultRegion;

    /// <summary>The endpoint override (LocalStack, fauxqs, a VPC endpoint), or <see langword="null"/> for AWS's regional endpoint.</summary>
    public Uri? Endpoint { get; private init; }

    /// <summary>The access key from the URI, or <see langword="null"/> for the standard AWS credential chain.</summary>
    public string? AccessKey { get; private init; }

    /// <summary>The secret key from the URI. Never logged.</summary>
    public string? SecretKey { get; private init; }

    /// <summary>An optional session token (setting <c>session-token</c>). Never logged.</summary>
    public string? SessionToken { get; private init; }

    /// <summary>Long-poll wait per ReceiveMessage, seconds (0–20).</summary>
    public int WaitSeconds { get; private init; } = 5;

    /// <summary>How long a publisher trusts its list of a topic's groups before listing again.</summary>
    public TimeSpan GroupCacheTime { get; private init; } = TimeSpan.FromSeconds(1);

    /// <summary>The native redrive safety net: receives after which SQS itself moves a message to the dead-letter queue.</summary>
    public int MaxReceiveCount { get; private init; } = 10;

    /// <summary>SDK retries per request.</summary>
    public int MaxRetries { get; private init; } = 3;

    /// <summary>SDK per-request timeout.</summary>
    public TimeSpan RequestTimeout { get; private init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long closing a consumer waits for the server beyond what it already expects (a long poll under way may
    /// take up to <see cref="WaitSeconds"/>): <see cref="TransportContext.CloseTimeout"/>.
    /// </summary>
    public TimeSpan CloseWait { get; private init; } = TimeSpan.FromSeconds(5);

    /// <summary>Concurrent ReceiveMessage calls per consumer.</summary>
    public int ReceiveConcurrency { get; private init; } = 1;

    /// <summary>Every topic uses FIFO queues (scheme <c>sqs-fifo</c>).</summary>
    public bool FifoAll { get; private init; }

    /// <summary>FIFO topics: the message id is the MessageDeduplicationId (setting <c>deduplication=message-id</c>) rather than a fresh id per publish call.</summary>
    public bool DeduplicateByMessageId { get; private init; }

    /// <summary>Where requests go, for diagnostics (never contains credentials).</summary>
    public string Describe() => Endpoint is { } endpoint ? $"{endpoint.GetLeftPart(UriPartial.Authority)} (region {Region})" : $"AWS SQS in {Region}";

    /// <summary>Parses the URI and settings.</summary>
    /// <exception cref="BusConfigurationException">Something is invalid; the message never contains a secret.</exception>
    public static SqsSettings Parse(TransportContext context)
    {
        var uri = context.Uri;
        var host = uri.IsDefaultPort || uri.Port < 0 ? uri.Host : uri.Authority[(uri.Authority.LastIndexOf('@') + 1)..];
        var regionSetting = context.GetSetting("region");
        var endpointSetting = context.GetSetting("endpoint");
        var tls = ParseBool(context, "tls", false);
        Uri? endpoint = null;
        string region;
        if (endpointSetting is not null)
        {
            if (!Uri.TryCreate(endpointSetting, UriKind.Absolute, out endpoint) || endpoint.Scheme is not ("http" or "https"))
            {
                throw Invalid(context, "setting 'endpoint' must be an absolute http:// or https:// URL");
            }

            region = regionSetting ?? (IsRegion(uri.Host) ? uri.Host : DefaultRegion);
        }
        else if (uri.Host.Length > 0 && !(IsRegion(uri.Host) && uri.Port <= 0 && !HasExplicitPort(uri)))
        {
            // sqs://host:port → an endpoint override (LocalStack, fauxqs, ElasticMQ).
            var scheme = tls ? "https" : "http";
            endpoint = new Uri($"{scheme}://{host}");
            region = regionSetting ?? DefaultRegion;
        }
        else
        {
            region = regionSetting ?? (uri.Host.Length > 0 ? uri.Host : DefaultRegion);
        }

        if (!IsRegion(region))
        {
            throw Invalid(context, $"'{region}' is not an AWS region name (e.g. us-east-1)");
        }

        string? access = null, secret = null;
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':');
            if (colon <= 0)
            {
                throw Invalid(context, "credentials in the URI must be 'access-key:secret-key@'");
            }

            access = Uri.UnescapeDataString(uri.UserInfo[..colon]);
            secret = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        }

        var wait = context.GetSetting("wait-seconds", 5);
        if (wait is < 0 or > 20)
        {
            throw Invalid(context, $"setting 'wait-seconds' must be between 0 and 20 (SQS long polling); it is {wait}");
        }

        var cacheMs = context.GetSetting("group-cache-ms", 1000);
        if (cacheMs is < 0 or > 60_000)
        {
            throw Invalid(context, $"setting 'group-cache-ms' must be between 0 and 60000; it is {cacheMs}");
        }

        var maxReceive = context.GetSetting("max-receive-count", 10);
        if (maxReceive is < 1 or > 1000)
        {
            throw Invalid(context, $"setting 'max-receive-count' must be between 1 and 1000 (SQS redrive policy); it is {maxReceive}");
        }

        var retries = context.GetSetting("max-retries", 3);
        if (retries is < 0 or > 10)
        {
            throw Invalid(context, $"setting 'max-retries' must be between 0 and 10; it is {retries}");
        }

        var timeoutMs = context.GetSetting("request-timeout-ms", 30_000);
        if (timeoutMs is < 100 or > 300_000)
        {
            throw Invalid(context, $"setting 'request-timeout-ms' must be between 100 and 300000; it is {timeoutMs}");
        }

        var concurrency = context.GetSetting("receive-concurrency", 1);
        if (concurrency is < 1 or > 16)
        {
            throw Invalid(context, $"setting 'receive-concurrency' must be between 1 and 16; it is {concurrency}");
        }

        // Read before it is combined with the scheme: a setting that is never read fails the bus's creation.
        var fifoSetting = ParseBool(context, "fifo", false);
        var deduplication = context.GetSetting("deduplication", "publish")!;
        if (deduplication is not ("publish" or "message-id"))
        {
            throw Invalid(context, $"setting 'deduplication' must be 'publish' or 'message-id'; it is '{deduplication}'");
        }

        return new SqsSettings
        {
            DeduplicateByMessageId = deduplication == "message-id",
            Region = region,
            Endpoint = endpoint,
            AccessKey = access,
            SecretKey = secret,
            SessionToken = context.GetSetting("session-token"),
            WaitSeconds = wait,
            GroupCacheTime = TimeSpan.FromMilliseconds(cacheMs),
            MaxReceiveCount = maxReceive,
            MaxRetries = retries,
            RequestTimeout = TimeSpan.FromMilliseconds(Math.Max(timeoutMs, (wait + 5) * 1000)),
            ReceiveConcurrency = concurrency,
            CloseWait = context.CloseTimeout,
            FifoAll = fifoSetting || uri.Scheme.Equals(SqsFifoTransportFactory.Scheme, StringComparison.OrdinalIgnoreCase),
        };
    }

    private static bool HasExplicitPort(Uri uri) => uri.Authority.AsSpan(uri.Authority.LastIndexOf('@') + 1).Contains(':');

    private static bool ParseBool(TransportContext context, string name, bool defaultValue)
    {
        var text = context.GetSetting(name);
        return text is null
            ? defaultValue
            : bool.TryParse(text, out var value) ? value : throw Invalid(context, $"setting '{name}' must be true or false; it is '{text}'");
    }

    internal static bool IsRegion(string text) => RegionPattern().IsMatch(text);

    private static BusConfigurationException Invalid(TransportContext context, string problem)
        => new($"sqs: cannot use '{context.RedactedUrl}': {problem}.", SqsTransportFactory.BackendName);

    [GeneratedRegex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", RegexOptions.CultureInvariant)]
    private static partial Regex RegionPattern();
}
