using System.Text;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>
/// MQTT readiness: an MQTT 3.1.1 CONNECT answered by CONNACK "accepted"; then, briefly, the retained
/// <c>$SYS/broker/version</c> that Mosquitto publishes (other brokers may not, which is fine).
/// </summary>
internal static class MqttProbe
{
    private static readonly TimeSpan VersionWait = TimeSpan.FromSeconds(1);

    public static async Task<string> ProbeAsync(Uri uri, CancellationToken cancellationToken)
    {
        await using var connection = await ProbeConnection.OpenAsync(uri, 1883, cancellationToken).ConfigureAwait(false);
        await connection.WriteAsync(Connect(uri), cancellationToken).ConfigureAwait(false);
        var (type, body) = await ReadPacketAsync(connection, cancellationToken).ConfigureAwait(false);
        if (type != 0x20 || body.Length < 2)
        {
            throw new InvalidDataException($"expected CONNACK, got packet type 0x{type:x2}");
        }

        if (body[1] != 0)
        {
            throw new InvalidDataException($"CONNACK refused the connection (return code {body[1]})");
        }

        var version = await TryReadVersionAsync(connection, cancellationToken).ConfigureAwait(false);
        await connection.WriteAsync([0xE0, 0x00], cancellationToken).ConfigureAwait(false); // DISCONNECT
        return version ?? "MQTT 3.1.1 broker";
    }

    private static async Task<string?> TryReadVersionAsync(ProbeConnection connection, CancellationToken cancellationToken)
    {
        const string topic = "$SYS/broker/version";
        var subscribe = new List<byte> { 0x00, 0x01 }; // packet id 1
        subscribe.AddRange(Utf8(topic));
        subscribe.Add(0x00); // QoS 0
        await connection.WriteAsync(Packet(0x82, subscribe), cancellationToken).ConfigureAwait(false);

        using var wait = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        wait.CancelAfter(VersionWait);
        try
        {
            while (true)
            {
                var (type, body) = await ReadPacketAsync(connection, wait.Token).ConfigureAwait(false);
                if ((type & 0xF0) == 0x30 && body.Length >= 2)
                {
                    var topicLength = (body[0] << 8) | body[1];
                    var qos = (type >> 1) & 0x03;
                    var payloadStart = 2 + topicLength + (qos > 0 ? 2 : 0);
                    return Encoding.UTF8.GetString(body, payloadStart, body.Length - payloadStart);
                }
            }
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    private static byte[] Connect(Uri uri)
    {
        var body = new List<byte>();
        body.AddRange(Utf8("MQTT"));
        body.Add(0x04); // protocol level 3.1.1
        var user = uri.UserInfo.Split(':', 2);
        var hasUser = user[0].Length > 0;
        var hasPassword = user.Length == 2;
        body.Add((byte)(0x02 | (hasUser ? 0x80 : 0) | (hasPassword ? 0x40 : 0))); // clean session
        body.AddRange([0x00, 0x0A]); // keep alive 10 s
        body.AddRange(Utf8($"bus-probe-{Guid.NewGuid():N}"[..23]));
        if (hasUser)
        {
            body.AddRange(Utf8(Uri.UnescapeDataString(user[0])));
        }

        if (hasPassword)
        {
            body.AddRange(Utf8(Uri.UnescapeDataString(user[1])));
        }

        return Packet(0x10, body);
    }

    private static byte[] Packet(byte type, List<byte> body)
    {
        var packet = new List<byte> { type };
        var length = body.Count;
        do
        {
            var digit = (byte)(length % 128);
            length /= 128;
            packet.Add(length > 0 ? (byte)(digit | 0x80) : digit);
        }
        while (length > 0);
        packet.AddRange(body);
        return [.. packet];
    }

    private static byte[] Utf8(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        return [(byte)(bytes.Length >> 8), (byte)bytes.Length, .. bytes];
    }

    private static async Task<(byte Type, byte[] Body)> ReadPacketAsync(ProbeConnection connection, CancellationToken cancellationToken)
    {
        var type = (await connection.ReadExactlyAsync(1, cancellationToken).ConfigureAwait(false))[0];
        int length = 0, multiplier = 1;
        byte digit;
        do
        {
            digit = (await connection.ReadExactlyAsync(1, cancellationToken).ConfigureAwait(false))[0];
            length += (digit & 0x7F) * multiplier;
            multiplier *= 128;
        }
        while ((digit & 0x80) != 0 && multiplier <= 128 * 128 * 128);
        return (type, await connection.ReadExactlyAsync(length, cancellationToken).ConfigureAwait(false));
    }
}
