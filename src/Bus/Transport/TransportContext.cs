using Microsoft.Extensions.Logging;

namespace Bus.Transport;

/// <summary>What a transport is created from.</summary>
public sealed class TransportContext
{
    /// <summary>Creates a context.</summary>
    /// <param name="uri">The parsed connection URI (may contain credentials: never log it, use <see cref="RedactedUrl"/>).</param>
    /// <param name="options">The bus options (a private copy).</param>
    /// <param name="loggerFactory">For the transport's loggers.</param>
    public TransportContext(Uri uri, BusOptions options, ILoggerFactory loggerFactory)
    {
        Uri = uri;
        Options = options;
        LoggerFactory = loggerFactory;
        RedactedUrl = UriRedaction.Redact(uri);
        (_settings, _afterSecret) = ParseSettings(uri, options);
    }

    private readonly Dictionary<string, string> _settings;

    // Query names that came after a secret's value (password=…): with an unescaped '&' in that value, they are pieces
    // of it, so an error names them only by count.
    private readonly HashSet<string> _afterSecret;

    // The names the transport asked for, present or not: what it reads with this URI. A setting that is given and
    // never asked for is a typo or meant for another backend, and fails at startup instead of being ignored.
    private readonly HashSet<string> _asked = new(StringComparer.OrdinalIgnoreCase);
    private bool _enumerated;

    /// <summary>The connection URI, credentials included.</summary>
    public Uri Uri { get; }

    /// <summary>The URI with any password replaced by <c>***</c>: the only form that may appear in logs and errors.</summary>
    public string RedactedUrl { get; }

    /// <summary>The bus options.</summary>
    public BusOptions Options { get; }

    /// <summary>For the transport's loggers.</summary>
    public ILoggerFactory LoggerFactory { get; }

    /// <summary>
    /// How long one step of closing (a consumer's channel or connection, the connection to the broker) may wait for the
    /// broker: <see cref="BusOptions.OperationTimeout"/>, but at most 5 seconds. A broker that is frozen or cut off
    /// answers nothing, and a shutdown that waited the full operation timeout (30 s by default) per consumer would outlast
    /// most hosts' shutdown grace period. Past it, a transport gives the step up (what it sent stays sent).
    /// </summary>
    public TimeSpan CloseTimeout => Options.OperationTimeout < MaxCloseTimeout ? Options.OperationTimeout : MaxCloseTimeout;

    private static readonly TimeSpan MaxCloseTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Backend settings: <see cref="BusOptions.Settings"/> overlaid with the URI's query parameters. A transport that
    /// reads this dictionary (rather than <see cref="GetSetting(string, string?)"/>) checks the names itself: core then
    /// no longer rejects settings that were not asked for.
    /// </summary>
    public IReadOnlyDictionary<string, string> Settings
    {
        get
        {
            _enumerated = true;
            return _settings;
        }
    }

    /// <summary>
    /// A setting as text, or <paramref name="defaultValue"/>. Asking counts the name as one the backend takes: a setting
    /// that was given and that no call asked for by the end of <see cref="IBusTransportFactory.Create"/> fails the bus's
    /// creation, so ask for every setting there, also those that matter only with some URIs.
    /// </summary>
    /// <param name="name">The setting's name (case-insensitive).</param>
    /// <param name="defaultValue">Returned when absent.</param>
    public string? GetSetting(string name, string? defaultValue = null)
    {
        lock (_asked)
        {
            // A transport may also ask later, from any thread; only what it asked by the end of Create counts.
            _asked.Add(name);
        }

        return _settings.TryGetValue(name, out var value) ? value : defaultValue;
    }

    /// <summary>A setting as an integer, or <paramref name="defaultValue"/>.</summary>
    /// <param name="name">The setting's name.</param>
    /// <param name="defaultValue">Returned when absent.</param>
    /// <exception cref="BusConfigurationException">The value is not an integer.</exception>
    public int GetSetting(string name, int defaultValue)
    {
        var text = GetSetting(name);
        if (text is null)
        {
            return defaultValue;
        }

        return int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value)
            ? value
            : throw new BusConfigurationException($"Setting '{name}' must be an integer; it is '{text}'.");
    }

    /// <summary>Settings given and never asked for by the transport (none if it read <see cref="Settings"/> itself).</summary>
    internal IReadOnlyList<string> UnusedSettings()
    {
        lock (_asked)
        {
            return _enumerated ? [] : [.. _settings.Keys.Where(name => !_asked.Contains(name)).Order(StringComparer.OrdinalIgnoreCase)];
        }
    }

    /// <summary>
    /// Whether an unused setting may be named in an error: not when it came after a secret in the URI's query, where
    /// it may be a piece of the secret's value that an unescaped '&amp;' split off.
    /// </summary>
    internal bool MayName(string setting) => !_afterSecret.Contains(setting);

    /// <summary>The names the transport asked for.</summary>
    internal IReadOnlyList<string> AskedSettings()
    {
        lock (_asked)
        {
            return [.. _asked.Order(StringComparer.OrdinalIgnoreCase)];
        }
    }

    private static (Dictionary<string, string> Settings, HashSet<string> AfterSecret) ParseSettings(Uri uri, BusOptions options)
    {
        var settings = new Dictionary<string, string>(options.Settings, StringComparer.OrdinalIgnoreCase);
        var afterSecretNames = new HashSet<string>(StringComparer.OrdinalIgnoreCase);
        var query = uri.Query;
        if (query.Length > 1)
        {
            foreach (var (name, value, afterSecret) in UriRedaction.QueryParts(query[1..]))
            {
                settings[name] = value ?? "true";
                if (afterSecret)
                {
                    afterSecretNames.Add(name);
                }
            }
        }

        return (settings, afterSecretNames);
    }
}
