using System.Globalization;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Bus.Transport;
using RabbitMQ.Client;

namespace Bus.RabbitMq.Internal;

/// <summary>Where and how to connect, and the topology defaults, parsed once from the URI and settings.</summary>
internal sealed class RabbitMqEndpoint
{
    public const string BackendName = "rabbitmq";

    /// <summary>Exchange and queue names are at most 255 bytes; leave room for ".dlq" and ":group".</summary>
    public const int MaxTopicNameLength = 200;

    public const int MaxBrokerMessageSize = 128 * 1024 * 1024;

    public required string Host { get; init; }

    public required int Port { get; init; }

    public string? UserName { get; init; }

    public string? Password { get; init; }

    public required string VirtualHost { get; init; }

    public bool Tls { get; init; }

    public bool TlsVerify { get; init; } = true;

    /// <summary>The name the server's certificate must carry (setting <c>tls-host</c>; default the URI's host).</summary>
    public string? TlsServerName { get; init; }

    /// <summary>Certificates (a private CA) the server's chain may end at, besides the system's (setting <c>tls-ca</c>).</summary>
    public X509Certificate2Collection? TlsTrustedRoots { get; init; }

    public RabbitMqQueueType QueueType { get; init; } = RabbitMqQueueType.Quorum;

    public bool SingleActiveConsumer { get; init; }

    public int? DeliveryLimit { get; init; }

    public int MaxMessageSize { get; init; } = RabbitMqTransportFactory.DefaultMaxMessageSize;

    public TimeSpan Heartbeat { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a private reply queue may go without a consumer before the broker deletes it (x-expires).</summary>
    public TimeSpan ReplyQueueExpiry { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>The URI without the password, for logs and errors.</summary>
    public required string RedactedUrl { get; init; }

    public static RabbitMqEndpoint Parse(TransportContext context)
    {
        var uri = context.Uri;
        var scheme = uri.Scheme.ToLowerInvariant();
        if (scheme is not ("rabbitmq" or "amqp" or "amqps"))
        {
            throw Invalid(context, $"scheme '{uri.Scheme}' is not rabbitmq, amqp or amqps");
        }

        // Read before it is combined: a setting that is never read fails the bus's creation as unknown.
        var tlsSetting = GetBool(context, "tls", false);
        var tls = scheme == "amqps" || tlsSetting;
        if (string.IsNullOrEmpty(uri.Host))
        {
            throw Invalid(context, "the host is missing");
        }

        string? user = null, password = null;
        if (uri.UserInfo.Length > 0)
        {
            var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
            user = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[..colon]);
            password = colon < 0 ? null : Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        }

        // "amqp://host", "amqp://host/" and "amqp://host/%2f" all mean the default vhost "/".
        var path = uri.AbsolutePath;
        var vhost = path.Length <= 1 ? "/" : Uri.UnescapeDataString(path[1..]);
        if (path.Length > 1 && path[1..].Contains('/', StringComparison.Ordinal))
        {
            throw Invalid(context, "the path must be a single vhost segment (write '/' inside a vhost name as %2f)");
        }

        var queueType = ParseQueueType(context.GetSetting("queue-type"), context.RedactedUrl, "setting 'queue-type'") ?? RabbitMqQueueType.Quorum;
        var maxSize = context.GetSetting("max-message-size", RabbitMqTransportFactory.DefaultMaxMessageSize);
        if (maxSize is < 1 or > MaxBrokerMessageSize)
        {
            throw new BusConfigurationException($"rabbitmq: setting 'max-message-size' must be between 1 and {MaxBrokerMessageSize} (RabbitMQ 3.10's default max_message_size); it is {maxSize}.", BackendName);
        }

        int? deliveryLimit = null;
        if (context.GetSetting("delivery-limit") is not null)
        {
            deliveryLimit = context.GetSetting("delivery-limit", 0);
            if (deliveryLimit < 1)
            {
                throw new BusConfigurationException($"rabbitmq: setting 'delivery-limit' must be at least 1; it is {deliveryLimit}.", BackendName);
            }
        }

        var replyQueueExpiry = context.GetSetting("reply-queue-expiry", 1800);
        if (replyQueueExpiry is < 1 or > int.MaxValue / 1000)
        {
            throw new BusConfigurationException($"rabbitmq: setting 'reply-queue-expiry' must be a positive number of seconds; it is {replyQueueExpiry}.", BackendName);
        }

        var heartbeat = context.GetSetting("heartbeat", 30);
        if (heartbeat < 0)
        {
            throw new BusConfigurationException($"rabbitmq: setting 'heartbeat' must not be negative; it is {heartbeat}.", BackendName);
        }

        return new RabbitMqEndpoint
        {
            Host = uri.Host,
            Port = uri.IsDefaultPort || uri.Port < 0 ? (tls ? 5671 : 5672) : uri.Port,
            UserName = user,
            Password = password,
            VirtualHost = vhost,
            Tls = tls,
            TlsVerify = GetBool(context, "tls-verify", true),
            TlsServerName = context.GetSetting("tls-host"),
            TlsTrustedRoots = LoadTrustedRoots(context, tls),
            QueueType = queueType,
            SingleActiveConsumer = GetBool(context, "single-active-consumer", false),
            DeliveryLimit = deliveryLimit,
            MaxMessageSize = maxSize,
            Heartbeat = TimeSpan.FromSeconds(heartbeat),
            ReplyQueueExpiry = TimeSpan.FromSeconds(replyQueueExpiry),
            RedactedUrl = context.RedactedUrl,
        };
    }

    /// <summary>Parses a queue type; <see langword="null"/> for none. Streams are refused with the reason.</summary>
    public static RabbitMqQueueType? ParseQueueType(string? text, string where, string what) => text?.Trim().ToLowerInvariant() switch
    {
        null or "" => null,
        "quorum" => RabbitMqQueueType.Quorum,
        "classic" => RabbitMqQueueType.Classic,
        "stream" => throw new BusException(
            $"rabbitmq: {what} 'stream' is not supported ({where}): a stream has no acknowledgements or group offsets over AMQP 0-9-1, so it cannot carry Bus groups",
            BusFailureReason.NotSupported, BackendName),
        _ => throw new BusConfigurationException($"rabbitmq: {what} must be 'quorum' or 'classic'; it is '{text}' ({where}).", BackendName),
    };

    public ConnectionFactory CreateConnectionFactory(TimeSpan connectTimeout, string clientName)
    {
        var factory = new ConnectionFactory
        {
            HostName = Host,
            Port = Port,
            VirtualHost = VirtualHost,
            AutomaticRecoveryEnabled = true,
            TopologyRecoveryEnabled = true,
            NetworkRecoveryInterval = TimeSpan.FromSeconds(2),
            RequestedConnectionTimeout = connectTimeout,
            RequestedHeartbeat = Heartbeat,
            ClientProvidedName = clientName,
        };
        if (UserName is not null)
        {
            factory.UserName = UserName;
        }

        if (Password is not null)
        {
            factory.Password = Password;
        }

        if (Tls)
        {
            factory.Ssl = new SslOption
            {
                Enabled = true,
                ServerName = TlsServerName ?? Host,
                AcceptablePolicyErrors = TlsVerify ? SslPolicyErrors.None : SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateChainErrors | SslPolicyErrors.RemoteCertificateNotAvailable,
            };
            if (TlsVerify && TlsTrustedRoots is { } roots)
            {
                factory.Ssl.CertificateValidationCallback = (_, certificate, chain, errors) => IsTrusted(certificate, chain, errors, roots);
            }
        }

        return factory;
    }

    private static X509Certificate2Collection? LoadTrustedRoots(TransportContext context, bool tls)
    {
        if (context.GetSetting("tls-ca") is not { } path)
        {
            return null;
        }

        if (!tls)
        {
            throw Invalid(context, "setting 'tls-ca' needs TLS (amqps:// or tls=true)");
        }

        var roots = new X509Certificate2Collection();
        try
        {
            roots.ImportFromPemFile(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or CryptographicException)
        {
            throw Invalid(context, $"setting 'tls-ca' names '{path}', which could not be read as PEM certificates ({ex.Message})");
        }

        return roots.Count > 0 ? roots : throw Invalid(context, $"setting 'tls-ca' names '{path}', which holds no PEM certificate");
    }

    /// <summary>
    /// The server's certificate passes as the system judges it, or when its only fault is a chain that ends at none of
    /// the system's roots (every status untrusted root or partial chain: not expiry, not a usage other than server
    /// authentication) and it chains to one of <paramref name="roots"/>, for server authentication. The host name is
    /// checked either way.
    /// </summary>
    internal static bool IsTrusted(X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors, X509Certificate2Collection roots)
    {
        if (errors == SslPolicyErrors.None)
        {
            return true;
        }

        if (errors != SslPolicyErrors.RemoteCertificateChainErrors || certificate is null || chain is null
            || chain.ChainStatus.Any(status => status.Status is not (X509ChainStatusFlags.UntrustedRoot or X509ChainStatusFlags.PartialChain)))
        {
            return false;
        }

        using var custom = new X509Chain();
        custom.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        custom.ChainPolicy.CustomTrustStore.AddRange(roots);
        custom.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        custom.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.1")); // server authentication
        foreach (var element in chain.ChainElements)
        {
            custom.ChainPolicy.ExtraStore.Add(element.Certificate); // intermediates the server sent
        }

        if (certificate is X509Certificate2 leaf)
        {
            return custom.Build(leaf);
        }

        using var loaded = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return custom.Build(loaded);
    }

    private static bool GetBool(TransportContext context, string name, bool defaultValue)
    {
        var text = context.GetSetting(name);
        if (text is null)
        {
            return defaultValue;
        }

        return bool.TryParse(text, out var value)
            ? value
            : text is "1" or "yes" ? true : text is "0" or "no" ? false
            : throw new BusConfigurationException($"rabbitmq: setting '{name}' must be true or false; it is '{text}'.", BackendName);
    }

    private static BusConfigurationException Invalid(TransportContext context, string why)
        => new($"rabbitmq: invalid URI {context.RedactedUrl}: {why}.", BackendName);

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{RedactedUrl} (vhost '{VirtualHost}', {QueueType} queues)");
}
