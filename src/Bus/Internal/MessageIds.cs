using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Bus.Internal;

/// <summary>
/// Time-ordered message ids: RFC 9562 version 7 UUIDs as 32 lower-case hex digits, so ids sort by creation time.
/// </summary>
/// <remarks>
/// <see cref="Guid.CreateVersion7()"/> draws fresh randomness for every id, which costs microseconds where the OS
/// random source is slow (it measured ~2 µs here, more than the whole in-memory publish). Instead the 74 random bits
/// are fixed per process and a counter is added to the lower 62, which keeps ids unique within the process,
/// increasing within a millisecond, and as unlikely to collide across processes as random ones.
/// </remarks>
internal static class MessageIds
{
    private static readonly ushort RandomA = (ushort)(RandomNumberGenerator.GetInt32(1 << 12));
    private static readonly long RandomB = BitConverter.ToInt64(RandomNumberGenerator.GetBytes(8));
    private static long _sequence;

    public static string New()
    {
        Span<byte> bytes = stackalloc byte[16];
        var milliseconds = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        BinaryPrimitives.WriteInt64BigEndian(bytes, milliseconds << 16);          // unix_ts_ms: the first 48 bits
        BinaryPrimitives.WriteUInt16BigEndian(bytes[6..], (ushort)(0x7000 | RandomA)); // version 7 + rand_a
        BinaryPrimitives.WriteInt64BigEndian(bytes[8..], RandomB + Interlocked.Increment(ref _sequence));
        bytes[8] = (byte)(0x80 | (bytes[8] & 0x3F));                             // variant 10 + rand_b
        return Convert.ToHexStringLower(bytes);
    }
}
