using System.Globalization;
using System.Text;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>Redis readiness: PING answered with PONG, then the version from <c>INFO server</c>.</summary>
internal static class RespProbe
{
    public static async Task<string> ProbeAsync(Uri uri, CancellationToken cancellationToken)
    {
        await using var connection = await ProbeConnection.OpenAsync(uri, 6379, cancellationToken).ConfigureAwait(false);
        if (!string.IsNullOrEmpty(uri.UserInfo))
        {
            // redis://user:password@host or redis://:password@host
            var parts = Uri.UnescapeDataString(uri.UserInfo).Split(':', 2);
            var command = parts.Length == 2 && parts[0].Length > 0 ? Command("AUTH", parts[0], parts[1]) : Command("AUTH", parts[^1]);
            await connection.WriteAsync(command, cancellationToken).ConfigureAwait(false);
            Expect(await connection.ReadLineAsync(cancellationToken).ConfigureAwait(false), "+OK");
        }

        await connection.WriteAsync(Command("PING"), cancellationToken).ConfigureAwait(false);
        Expect(await connection.ReadLineAsync(cancellationToken).ConfigureAwait(false), "+PONG");

        await connection.WriteAsync(Command("INFO", "server"), cancellationToken).ConfigureAwait(false);
        var header = await connection.ReadLineAsync(cancellationToken).ConfigureAwait(false);
        if (!header.StartsWith('$') || !int.TryParse(header.AsSpan(1), NumberStyles.Integer, CultureInfo.InvariantCulture, out var length))
        {
            return "Redis";
        }

        var info = Encoding.UTF8.GetString(await connection.ReadExactlyAsync(length, cancellationToken).ConfigureAwait(false));
        var version = info.Split('\n').Select(l => l.Trim()).FirstOrDefault(l => l.StartsWith("redis_version:", StringComparison.Ordinal));
        return version is null ? "Redis" : $"Redis {version["redis_version:".Length..]}";
    }

    private static string Command(params string[] parts)
    {
        var text = new StringBuilder().Append(CultureInfo.InvariantCulture, $"*{parts.Length}\r\n");
        foreach (var part in parts)
        {
            text.Append(CultureInfo.InvariantCulture, $"${Encoding.UTF8.GetByteCount(part)}\r\n{part}\r\n");
        }

        return text.ToString();
    }

    private static void Expect(string line, string expected)
    {
        if (!line.Equals(expected, StringComparison.Ordinal))
        {
            // While Redis loads its data set it answers -LOADING.
            throw new InvalidDataException($"expected {expected}, got {line}");
        }
    }
}
