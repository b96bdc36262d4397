using System.Text.Json;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>
/// NATS readiness: the INFO line every server sends on connect (with its version), and, where the monitoring port is
/// known, <c>/healthz?js-enabled-only=true</c> so that JetStream is ready too.
/// </summary>
internal static class NatsProbe
{
    public static async Task<string> ProbeAsync(Uri uri, Uri? monitoring, CancellationToken cancellationToken)
    {
        string version;
        bool jetStream;
        await using (var connection = await ProbeConnection.OpenAsync(uri, 4222, cancellationToken).ConfigureAwait(false))
        {
            var line = await connection.ReadLineAsync(cancellationToken).ConfigureAwait(false);
            if (!line.StartsWith("INFO ", StringComparison.Ordinal))
            {
                throw new InvalidDataException($"expected INFO, got {line}");
            }

            using var info = JsonDocument.Parse(line[5..]);
            version = info.RootElement.TryGetProperty("version", out var v) ? v.GetString() ?? "?" : "?";
            jetStream = info.RootElement.TryGetProperty("jetstream", out var js) && js.ValueKind == JsonValueKind.True;
        }

        if (monitoring is not null)
        {
            await HttpProbe.GetAsync(new Uri(monitoring, "/healthz?js-enabled-only=true"), cancellationToken).ConfigureAwait(false);
        }

        return jetStream ? $"nats-server {version}, JetStream" : $"nats-server {version}, no JetStream";
    }
}
