using System.Globalization;
using Bus.Transport;
using StackExchange.Redis;

namespace Bus.Redis.Internal;

/// <summary>
/// What a <c>redis://</c> or <c>rediss://</c> URI and the bus settings say: endpoint, credentials, database, TLS,
/// trimming, size limit and polling. Parsed once, without I/O.
/// </summary>
internal sealed class RedisSettings
{
    public const int DefaultMaxMessageSize = 16 * 1024 * 1024;

    /// <summary>Redis strings (and so a stream field) hold at most 512 MB.</summary>
    public const int RedisMaxStringSize = 512 * 1024 * 1024;

    public required ConfigurationOptions Configuration { get; init; }

    public required int Database { get; init; }

    public required bool Tls { get; init; }

    public required int MaxMessageSize { get; init; }

    /// <summary>Approximate MAXLEN applied on every XADD, or <see langword="null"/>.</summary>
    public long? TrimMaxLength { get; init; }

    /// <summary>Approximate MINID (now minus this age) applied on every XADD, or <see langword="null"/>.</summary>
    public TimeSpan? TrimMaxAge { get; init; }

    /// <summary>Whether XADD trims at all.</summary>
    public bool Trims => TrimMaxLength is not null || TrimMaxAge is not null;

    /// <summary>Whether trimming is exact (<c>=</c>) rather than approximate (<c>~</c>, the default).</summary>
    public bool TrimExact { get; init; }

    /// <summary>The longest pause between two empty polls of a receiver.</summary>
    public TimeSpan PollMaxDelay { get; init; } = TimeSpan.FromMilliseconds(20);

    /// <summary>How often a receiver looks for pending entries it may claim (abandoned, released or nacked).</summary>
    public TimeSpan ClaimInterval { get; init; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How often a receiver looks for due delayed messages published by other processes.</summary>
    public TimeSpan DelayCheckInterval { get; init; } = TimeSpan.FromSeconds(1);

    public static RedisSettings Parse(TransportContext context)
    {
        var uri = context.Uri;
        var scheme = uri.Scheme.ToLowerInvariant();
        if (scheme is not ("redis" or "rediss"))
        {
            throw Invalid($"scheme '{scheme}' is not redis or rediss");
        }

        if (string.IsNullOrEmpty(uri.Host))
        {
            throw new BusConfigurationException($"redis: the URI {context.RedactedUrl} has no host.", RedisTransportFactory.BackendName);
        }

        var tls = scheme == "rediss";
        var port = uri.IsDefaultPort || uri.Port < 0 ? 6379 : uri.Port;
        var configuration = new ConfigurationOptions
        {
            AbortOnConnectFail = true,
            Ssl = tls,
            ConnectTimeout = (int)Math.Clamp(context.Options.ConnectTimeout.TotalMilliseconds, 1, int.MaxValue),
            AsyncTimeout = (int)Math.Clamp(context.Options.OperationTimeout.TotalMilliseconds, 1, int.MaxValue),
            SyncTimeout = (int)Math.Clamp(context.Options.OperationTimeout.TotalMilliseconds, 1, int.MaxValue),
            ConnectRetry = 1,
            ClientName = context.GetSetting("client-name") ?? "bus",
        };
        var host = uri.Host.StartsWith('[') ? uri.Host[1..^1] : uri.Host;
        configuration.EndPoints.Add(host, port);
        // Read whatever the scheme (an unread setting fails the bus's creation), used only with TLS.
        var tlsHost = context.GetSetting("tls-host");
        if (tls)
        {
            configuration.SslHost = tlsHost ?? host;
        }

        if (context.GetSetting("tls-ca") is { } caPath)
        {
            if (!tls)
            {
                throw Invalid("setting 'tls-ca' needs TLS: use rediss://");
            }

            if (!File.Exists(caPath))
            {
                throw Invalid($"setting 'tls-ca' names '{caPath}', which is not a file");
            }

            // The server's chain may end at this certificate (a private CA) as well as at a root the system trusts;
            // the host name is still checked.
            configuration.TrustIssuer(caPath);
        }

        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':');
            var user = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            var password = colon < 0 ? null : Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
            if (password is null)
            {
                // redis://secret@host is how many clients spell a password without a user (requirepass).
                configuration.Password = user;
            }
            else
            {
                configuration.User = user.Length == 0 ? null : user;
                configuration.Password = password;
            }
        }

        var database = 0;
        var path = uri.AbsolutePath.Trim('/');
        if (path.Length > 0 && (!int.TryParse(path, NumberStyles.None, CultureInfo.InvariantCulture, out database) || database > 15_999))
        {
            throw Invalid($"the path '/{path}' must be a database number (e.g. redis://host:6379/2)");
        }

        var maxSize = context.GetSetting("max-message-size", DefaultMaxMessageSize);
        if (maxSize is < 1 or > RedisMaxStringSize)
        {
            throw Invalid($"setting 'max-message-size' must be between 1 and {RedisMaxStringSize} (the Redis string limit); it is {maxSize}");
        }

        long? maxLength = null;
        if (context.GetSetting("trim-maxlen") is { } maxLengthText)
        {
            maxLength = long.TryParse(maxLengthText, NumberStyles.Integer, CultureInfo.InvariantCulture, out var parsed) && parsed > 0
                ? parsed
                : throw Invalid($"setting 'trim-maxlen' must be a positive number of entries; it is '{maxLengthText}'");
        }

        var maxAge = ParseDuration(context, "trim-max-age", null);
        if (maxAge is { } age && age <= TimeSpan.Zero)
        {
            throw Invalid("setting 'trim-max-age' must be positive");
        }

        if (maxLength is not null && maxAge is not null)
        {
            throw Invalid("settings 'trim-maxlen' and 'trim-max-age' exclude each other (XADD takes one of MAXLEN or MINID)");
        }

        var trimExact = context.GetSetting("trim-exact") is { } exactText && (bool.TryParse(exactText, out var exact)
            ? exact
            : throw Invalid($"setting 'trim-exact' must be true or false; it is '{exactText}'"));
        var pollMaxDelay = ParseDuration(context, "poll-max-delay", TimeSpan.FromMilliseconds(20))!.Value;
        var claimInterval = ParseDuration(context, "claim-interval", TimeSpan.FromMilliseconds(200))!.Value;
        var delayCheck = ParseDuration(context, "delay-check-interval", TimeSpan.FromSeconds(1))!.Value;
        if (pollMaxDelay <= TimeSpan.Zero || claimInterval <= TimeSpan.Zero || delayCheck <= TimeSpan.Zero)
        {
            throw Invalid("settings 'poll-max-delay', 'claim-interval' and 'delay-check-interval' must be positive");
        }

        configuration.DefaultDatabase = database;
        return new RedisSettings
        {
            Configuration = configuration,
            Database = database,
            Tls = tls,
            MaxMessageSize = maxSize,
            TrimMaxLength = maxLength,
            TrimMaxAge = maxAge,
            TrimExact = trimExact,
            PollMaxDelay = pollMaxDelay,
            ClaimInterval = claimInterval,
            DelayCheckInterval = delayCheck,
        };
    }

    /// <summary>The XADD trimming arguments (between the key and the id) as boxed <see cref="RedisValue"/>s, possibly none.</summary>
    public List<object> TrimArguments()
    {
        var arguments = new List<object>(3);
        if (TrimMaxLength is { } maxLength)
        {
            arguments.Add((RedisValue)"MAXLEN");
            arguments.Add((RedisValue)(TrimExact ? "=" : "~"));
            arguments.Add((RedisValue)maxLength);
        }
        else if (TrimMaxAge is { } maxAge)
        {
            // Stream ids are <ms>-<seq>; everything older than the cut-off may go.
            var cutOff = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (long)maxAge.TotalMilliseconds;
            arguments.Add((RedisValue)"MINID");
            arguments.Add((RedisValue)(TrimExact ? "=" : "~"));
            arguments.Add((RedisValue)(Math.Max(0, cutOff).ToString(CultureInfo.InvariantCulture) + "-0"));
        }

        return arguments;
    }

    /// <summary>A duration: a number of milliseconds, or a <see cref="TimeSpan"/> text such as <c>00:10:00</c>, or <c>30s</c>, <c>5m</c>, <c>2h</c>, <c>7d</c>.</summary>
    private static TimeSpan? ParseDuration(TransportContext context, string name, TimeSpan? defaultValue)
    {
        var text = context.GetSetting(name);
        if (text is null)
        {
            return defaultValue;
        }

        text = text.Trim();
        if (long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var ms))
        {
            return TimeSpan.FromMilliseconds(ms);
        }

        if (text.Length > 1 && double.TryParse(text[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var amount))
        {
            switch (char.ToLowerInvariant(text[^1]))
            {
                case 's': return TimeSpan.FromSeconds(amount);
                case 'm': return TimeSpan.FromMinutes(amount);
                case 'h': return TimeSpan.FromHours(amount);
                case 'd': return TimeSpan.FromDays(amount);
            }
        }

        return TimeSpan.TryParse(text, CultureInfo.InvariantCulture, out var span)
            ? span
            : throw Invalid($"setting '{name}' must be a duration (milliseconds, 30s, 5m, 2h, 7d or hh:mm:ss); it is '{text}'");
    }

    private static BusConfigurationException Invalid(string why) => new($"redis: {why}.", RedisTransportFactory.BackendName);
}
