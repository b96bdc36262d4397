using System.Globalization;
using Bus.Transport;

namespace Bus.Kafka.Internal;

/// <summary>
/// What a <c>kafka://</c> or <c>kafkas://</c> URI and the bus settings say: the bootstrap servers, the security
/// settings (credentials from the user info become SASL settings) and the librdkafka properties passed through.
/// </summary>
internal sealed class KafkaEndpoint
{
    /// <summary>The broker's default <c>message.max.bytes</c>: the largest message Kafka accepts out of the box.</summary>
    public const int DefaultMaxMessageSize = 1_000_000;

    /// <summary>How long CreateTopics may take before the adapter falls back to broker auto-creation.</summary>
    public const int DefaultCreateTopicsTimeoutMs = 5_000;

    private KafkaEndpoint(string bootstrapServers, Dictionary<string, string> common, Dictionary<string, string> producer, Dictionary<string, string> consumer, Dictionary<string, string> admin, int maxMessageSize, int createTopicsTimeoutMs)
    {
        BootstrapServers = bootstrapServers;
        Common = common;
        Producer = producer;
        Consumer = consumer;
        Admin = admin;
        MaxMessageSize = maxMessageSize;
        CreateTopicsTimeoutMs = createTopicsTimeoutMs;
    }

    /// <summary><c>host:port,host:port</c>.</summary>
    public string BootstrapServers { get; }

    /// <summary>librdkafka properties for every client (security included; may hold the SASL password: never log).</summary>
    public IReadOnlyDictionary<string, string> Common { get; }

    /// <summary>librdkafka properties for the producer only (settings prefixed <c>producer.</c>).</summary>
    public IReadOnlyDictionary<string, string> Producer { get; }

    /// <summary>librdkafka properties for consumers only (settings prefixed <c>consumer.</c>).</summary>
    public IReadOnlyDictionary<string, string> Consumer { get; }

    /// <summary>librdkafka properties for the admin client only (settings prefixed <c>admin.</c>).</summary>
    public IReadOnlyDictionary<string, string> Admin { get; }

    /// <summary>The largest message (body plus key and headers) the bus lets through, in bytes.</summary>
    public int MaxMessageSize { get; }

    /// <summary>The CreateTopics timeout in milliseconds.</summary>
    public int CreateTopicsTimeoutMs { get; }

    /// <summary>Parses the URI and settings of <paramref name="context"/>.</summary>
    /// <exception cref="BusConfigurationException">The URI has no host, a port is invalid, or a setting is out of range.</exception>
    public static KafkaEndpoint Parse(TransportContext context)
    {
        var uri = context.Uri;
        var scheme = uri.Scheme.ToLowerInvariant();
        var servers = ParseServers(uri, context.RedactedUrl);
        var common = new Dictionary<string, string>(StringComparer.Ordinal);
        var producer = new Dictionary<string, string>(StringComparer.Ordinal);
        var consumer = new Dictionary<string, string>(StringComparer.Ordinal);
        var admin = new Dictionary<string, string>(StringComparer.Ordinal);

        var (user, password) = Credentials(uri);
        var tls = scheme == "kafkas";
        if (user is not null)
        {
            common["security.protocol"] = tls ? "SASL_SSL" : "SASL_PLAINTEXT";
            common["sasl.mechanism"] = "PLAIN";
            common["sasl.username"] = user;
            common["sasl.password"] = password ?? "";
        }
        else if (tls)
        {
            common["security.protocol"] = "SSL";
        }

        var maxMessageSize = DefaultMaxMessageSize;
        var createTopicsTimeout = DefaultCreateTopicsTimeoutMs;
        foreach (var (name, value) in context.Settings)
        {
            // Adapter settings use '-'; librdkafka properties never do (they use '.' and '_').
            switch (name.ToLowerInvariant())
            {
                case "max-message-size":
                    maxMessageSize = Positive(name, value);
                    continue;
                case "create-topics-timeout-ms":
                    createTopicsTimeout = Positive(name, value);
                    continue;
            }

            if (name.Contains('-', StringComparison.Ordinal))
            {
                throw new BusConfigurationException($"kafka: unknown setting '{name}' (adapter settings are max-message-size and create-topics-timeout-ms; librdkafka properties are passed through as written, optionally prefixed producer., consumer. or admin.).", "kafka");
            }

            var target = common;
            var property = name;
            if (name.StartsWith("producer.", StringComparison.OrdinalIgnoreCase))
            {
                (target, property) = (producer, name["producer.".Length..]);
            }
            else if (name.StartsWith("consumer.", StringComparison.OrdinalIgnoreCase))
            {
                (target, property) = (consumer, name["consumer.".Length..]);
            }
            else if (name.StartsWith("admin.", StringComparison.OrdinalIgnoreCase))
            {
                (target, property) = (admin, name["admin.".Length..]);
            }

            if (target == common && property.Equals("bootstrap.servers", StringComparison.OrdinalIgnoreCase))
            {
                // More bootstrap servers than System.Uri can hold: appended to the URI's.
                foreach (var server in value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
                {
                    if (!servers.Contains(server))
                    {
                        servers.Add(server);
                    }
                }

                continue;
            }

            if (property.Equals("bootstrap.servers", StringComparison.OrdinalIgnoreCase) || property.Equals("group.id", StringComparison.OrdinalIgnoreCase))
            {
                throw new BusConfigurationException($"kafka: setting '{name}' is not allowed: the bootstrap servers come from the URI (and the setting bootstrap.servers) and the group from the subscription options.", "kafka");
            }

            target[property] = value;
        }

        return new KafkaEndpoint(string.Join(',', servers), common, producer, consumer, admin, maxMessageSize, createTopicsTimeout);
    }

    /// <summary>
    /// <c>host:port[,host:port]</c> from the URI's authority, read from the original text because <see cref="Uri"/>
    /// knows only one host. (Core's URI parsing currently rejects a comma in the authority before the adapter sees
    /// it; the setting <c>bootstrap.servers</c> adds servers meanwhile.)
    /// </summary>
    internal static List<string> ParseServers(Uri uri, string redactedUrl)
    {
        var text = uri.OriginalString;
        var start = text.IndexOf("://", StringComparison.Ordinal);
        start = start < 0 ? 0 : start + 3;
        var end = text.IndexOfAny(['/', '?', '#'], start);
        var authority = end < 0 ? text[start..] : text[start..end];
        var at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            authority = authority[(at + 1)..];
        }

        var servers = new List<string>();
        foreach (var part in authority.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var colon = part.LastIndexOf(':');
            var host = colon > 0 && !part.EndsWith(']') ? part[..colon] : part;
            var port = 9092;
            if (colon > 0 && !part.EndsWith(']'))
            {
                if (!int.TryParse(part[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out port) || port is < 1 or > 65_535)
                {
                    throw new BusConfigurationException($"kafka: '{redactedUrl}': port '{part[(colon + 1)..]}' of server '{host}' is not a valid port.", "kafka");
                }
            }

            if (host.Length == 0)
            {
                throw new BusConfigurationException($"kafka: '{redactedUrl}' names an empty host.", "kafka");
            }

            servers.Add(string.Create(CultureInfo.InvariantCulture, $"{host}:{port}"));
        }

        return servers.Count == 0
            ? throw new BusConfigurationException($"kafka: '{redactedUrl}' names no bootstrap server; use kafka://host:9092[,host2:9092].", "kafka")
            : servers;
    }

    private static (string? User, string? Password) Credentials(Uri uri)
    {
        var info = uri.UserInfo;
        if (info.Length == 0)
        {
            return (null, null);
        }

        var colon = info.IndexOf(':');
        return colon < 0
            ? (Uri.UnescapeDataString(info), null)
            : (Uri.UnescapeDataString(info[..colon]), Uri.UnescapeDataString(info[(colon + 1)..]));
    }

    private static int Positive(string name, string value)
        => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var number) && number > 0
            ? number
            : throw new BusConfigurationException($"kafka: setting '{name}' must be a positive integer; it is '{value}'.", "kafka");
}
