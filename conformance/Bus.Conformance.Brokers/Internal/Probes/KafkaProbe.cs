using System.Buffers.Binary;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>Kafka readiness: an ApiVersions (v0) request answered without error. The protocol does not carry the version.</summary>
internal static class KafkaProbe
{
    public static async Task<string> ProbeAsync(Uri uri, CancellationToken cancellationToken)
    {
        await using var connection = await ProbeConnection.OpenAsync(uri, 9092, cancellationToken).ConfigureAwait(false);
        const string clientId = "bus-probe";
        var request = new byte[4 + 2 + 2 + 4 + 2 + clientId.Length];
        BinaryPrimitives.WriteInt32BigEndian(request, request.Length - 4);
        BinaryPrimitives.WriteInt16BigEndian(request.AsSpan(4), 18); // ApiVersions
        BinaryPrimitives.WriteInt16BigEndian(request.AsSpan(6), 0);
        BinaryPrimitives.WriteInt32BigEndian(request.AsSpan(8), 1); // correlation id
        BinaryPrimitives.WriteInt16BigEndian(request.AsSpan(12), (short)clientId.Length);
        System.Text.Encoding.ASCII.GetBytes(clientId, request.AsSpan(14));
        await connection.WriteAsync(request, cancellationToken).ConfigureAwait(false);

        var size = BinaryPrimitives.ReadInt32BigEndian(await connection.ReadExactlyAsync(4, cancellationToken).ConfigureAwait(false));
        var response = await connection.ReadExactlyAsync(size, cancellationToken).ConfigureAwait(false);
        var error = BinaryPrimitives.ReadInt16BigEndian(response.AsSpan(4));
        return error == 0 ? "Kafka protocol, ApiVersions answered" : throw new InvalidDataException($"ApiVersions error code {error}");
    }
}
