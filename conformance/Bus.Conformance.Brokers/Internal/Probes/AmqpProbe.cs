using System.Buffers.Binary;
using System.Text;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>
/// AMQP 0-9-1 readiness: sends the protocol header and reads the broker's Connection.Start, whose server properties
/// carry the product and version. Proves the AMQP listener is up without logging in.
/// </summary>
internal static class AmqpProbe
{
    private static readonly byte[] ProtocolHeader = "AMQP\0\0\u0009\u0001"u8.ToArray();

    public static async Task<string> ProbeAsync(Uri uri, CancellationToken cancellationToken)
    {
        await using var connection = await ProbeConnection.OpenAsync(uri, 5672, cancellationToken).ConfigureAwait(false);
        await connection.WriteAsync(ProtocolHeader, cancellationToken).ConfigureAwait(false);

        var header = await connection.ReadExactlyAsync(7, cancellationToken).ConfigureAwait(false);
        if (header[0] != 1)
        {
            // A broker that rejects the protocol version answers with its own header, "AMQP....".
            throw new InvalidDataException($"expected a method frame, got byte 0x{header[0]:x2}");
        }

        var size = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(3));
        if (size is < 4 or > 1 << 20)
        {
            throw new InvalidDataException($"implausible frame size {size}");
        }

        var payload = await connection.ReadExactlyAsync(size + 1, cancellationToken).ConfigureAwait(false);
        var classId = BinaryPrimitives.ReadUInt16BigEndian(payload);
        var methodId = BinaryPrimitives.ReadUInt16BigEndian(payload.AsSpan(2));
        if (classId != 10 || methodId != 10)
        {
            throw new InvalidDataException($"expected Connection.Start (10,10), got ({classId},{methodId})");
        }

        // class, method, version-major, version-minor, then the server-properties table.
        var properties = ReadTable(payload.AsSpan(6, size - 6));
        var product = properties.GetValueOrDefault("product", "AMQP broker");
        return properties.TryGetValue("version", out var version) ? $"{product} {version}" : product;
    }

    private static Dictionary<string, string> ReadTable(ReadOnlySpan<byte> span)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        var length = (int)BinaryPrimitives.ReadUInt32BigEndian(span);
        var table = span.Slice(4, length);
        var i = 0;
        while (i < table.Length)
        {
            var keyLength = table[i++];
            var key = Encoding.UTF8.GetString(table.Slice(i, keyLength));
            i += keyLength;
            var type = (char)table[i++];
            var valueLength = type switch
            {
                't' or 'b' or 'B' => 1,
                's' or 'u' => 2,
                'I' or 'i' or 'f' => 4,
                'l' or 'd' or 'T' => 8,
                'D' => 5,
                'V' => 0,
                'S' or 'x' or 'A' or 'F' => 4 + (int)BinaryPrimitives.ReadUInt32BigEndian(table[i..]),
                _ => throw new InvalidDataException($"unknown field type '{type}' in server properties"),
            };
            if (type == 'S')
            {
                result[key] = Encoding.UTF8.GetString(table.Slice(i + 4, valueLength - 4));
            }

            i += valueLength;
        }

        return result;
    }
}
