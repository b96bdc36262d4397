namespace Bus;

/// <summary>Where a new group starts reading. Ignored for a group that already has a position.</summary>
public readonly record struct StartPosition
{
    private StartPosition(StartPositionKind kind, string? position, DateTimeOffset time)
    {
        Kind = kind;
        Position = position;
        Time = time;
    }

    /// <summary>Which kind of start this is.</summary>
    public StartPositionKind Kind { get; }

    /// <summary>For <see cref="StartPositionKind.Position"/>: a <see cref="ReceivedMessage.Position"/>.</summary>
    public string? Position { get; }

    /// <summary>For <see cref="StartPositionKind.Time"/>: the earliest publish time to deliver.</summary>
    public DateTimeOffset Time { get; }

    /// <summary>Only messages published after the subscription is established (the default).</summary>
    public static StartPosition Latest => default;

    /// <summary>From the earliest retained message (needs <see cref="BusFeatures.Replay"/>).</summary>
    public static StartPosition Earliest => new(StartPositionKind.Earliest, null, default);

    /// <summary>From the message at <paramref name="position"/>, inclusive (needs <see cref="BusFeatures.ReplayFromPosition"/>).</summary>
    /// <param name="position">A position taken from <see cref="ReceivedMessage.Position"/>.</param>
    public static StartPosition At(string position)
    {
        ArgumentException.ThrowIfNullOrEmpty(position);
        return new(StartPositionKind.Position, position, default);
    }

    /// <summary>From the first message published at or after <paramref name="time"/> (needs <see cref="BusFeatures.ReplayFromTime"/>).</summary>
    /// <param name="time">The earliest publish time.</param>
    public static StartPosition AtTime(DateTimeOffset time) => new(StartPositionKind.Time, null, time);

    /// <inheritdoc />
    public override string ToString() => Kind switch
    {
        StartPositionKind.Position => $"position {Position}",
        StartPositionKind.Time => $"time {Time:O}",
        _ => Kind.ToString().ToLowerInvariant(),
    };
}

/// <summary>The kinds of <see cref="StartPosition"/>.</summary>
public enum StartPositionKind
{
    /// <summary>New messages only.</summary>
    Latest = 0,

    /// <summary>The earliest retained message.</summary>
    Earliest,

    /// <summary>A recorded position.</summary>
    Position,

    /// <summary>A point in time.</summary>
    Time,
}
