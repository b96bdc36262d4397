using System.Globalization;

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
