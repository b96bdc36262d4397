using System.Buffers.Text;
using System.Globalization;
using StackExchange.Redis;

namespace Bus.Redis.Internal;

/// <summary>Stream ids (<c>&lt;ms&gt;-&lt;seq&gt;</c>) and the group start ids derived from a <see cref="StartPosition"/>.</summary>
internal static class StreamIds
{
    private const string MaxSequence = "18446744073709551615";

    /// <summary>
    /// The id XGROUP CREATE takes: the last id the group has "already seen", so the first delivery is the entry after it.
    /// </summary>
    /// <exception cref="BusConfigurationException">A position that is not a stream id.</exception>
    public static string GroupStart(StartPosition start) => start.Kind switch
    {
        StartPositionKind.Earliest => "0",
        StartPositionKind.Position => Before(start.Position!),
        StartPositionKind.Time => BeforeTime(start.Time),
        _ => "$",
    };

    /// <summary>The greatest id smaller than <paramref name="id"/>, so that a group created there delivers <paramref name="id"/> first.</summary>
    public static string Before(string id)
    {
        if (!TryParse(id, out var ms, out var sequence))
        {
            throw new BusConfigurationException($"redis: start position '{id}' is not a stream id (<milliseconds>-<sequence>, as in ReceivedMessage.Position).", RedisTransportFactory.BackendName);
        }

        if (sequence > 0)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{ms}-{sequence - 1}");
        }

        return ms == 0 ? "0" : string.Create(CultureInfo.InvariantCulture, $"{ms - 1}-{MaxSequence}");
    }

    /// <summary>Stream ids start with the server's clock in milliseconds, so a time maps onto the id <c>&lt;ms&gt;-0</c>.</summary>
    public static string BeforeTime(DateTimeOffset time)
    {
        var ms = time.ToUnixTimeMilliseconds();
        return ms <= 0 ? "0" : string.Create(CultureInfo.InvariantCulture, $"{ms - 1}-{MaxSequence}");
    }

    /// <summary>
    /// Parses an id as StackExchange.Redis hands it over, from its bytes (no string): <c>&lt;ms&gt;</c> or
    /// <c>&lt;ms&gt;-&lt;seq&gt;</c>, both unsigned 64-bit numbers as Redis has them.
    /// </summary>
    public static bool TryParse(RedisValue id, out ulong ms, out ulong sequence)
    {
        ms = sequence = 0;
        Span<byte> buffer = stackalloc byte[48]; // the longest id is 20 + 1 + 20 bytes
        if (id.IsNullOrEmpty || id.GetByteCount() > buffer.Length)
        {
            return false;
        }

        var bytes = buffer[..id.CopyTo(buffer)];
        var dash = bytes.IndexOf((byte)'-');
        return dash < 0
            ? TryParseNumber(bytes, out ms)
            : TryParseNumber(bytes[..dash], out ms) && TryParseNumber(bytes[(dash + 1)..], out sequence);
    }

    /// <summary>Digits only (no sign, no spaces), all of them.</summary>
    private static bool TryParseNumber(ReadOnlySpan<byte> digits, out ulong value)
    {
        value = 0;
        return digits.Length > 0 && char.IsAsciiDigit((char)digits[0])
            && Utf8Parser.TryParse(digits, out value, out var consumed) && consumed == digits.Length;
    }

    public static bool TryParse(string id, out ulong ms, out ulong sequence)
    {
        sequence = 0;
        var dash = id.IndexOf('-');
        if (dash < 0)
        {
            return ulong.TryParse(id, NumberStyles.None, CultureInfo.InvariantCulture, out ms);
        }

        return ulong.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out ms)
            & ulong.TryParse(id.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out sequence);
    }
}
