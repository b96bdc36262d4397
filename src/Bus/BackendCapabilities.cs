namespace Bus;

/// <summary>
/// What a backend declares it can do. Immutable; read by applications (to adapt) and by the conformance
/// suite (to decide which cases apply).
/// </summary>
public sealed record BackendCapabilities
{
    /// <summary>The backend's short name, e.g. <c>rabbitmq</c>.</summary>
    public required string Backend { get; init; }

    /// <summary>The features the backend provides (natively or through core emulation).</summary>
    public required BusFeatures Features { get; init; }

    /// <summary>
    /// The largest message, in bytes, the backend accepts: the body together with the key, headers and ids as the
    /// backend encodes them, so the largest body is somewhat smaller (by the metadata's share). Larger messages fail
    /// before sending with <see cref="MessageTooLargeException"/>.
    /// </summary>
    public required int MaxMessageSize { get; init; }

    /// <summary>The longest topic name the backend accepts.</summary>
    public int MaxTopicNameLength { get; init; } = 249;

    /// <summary>
    /// Why a feature is missing, or how it is provided when it is emulated rather than native. Keys are single
    /// flags of <see cref="BusFeatures"/>.
    /// </summary>
    public IReadOnlyDictionary<BusFeatures, string> Remarks { get; init; } = new Dictionary<BusFeatures, string>();

    /// <summary>
    /// These capabilities with <see cref="MaxMessageSize"/> lowered or raised by configuration (the same instance when
    /// it is unchanged), for a transport factory whose URI or settings can set the limit.
    /// </summary>
    /// <param name="maxMessageSize">The configured limit, in bytes.</param>
    public BackendCapabilities WithMaxMessageSize(int maxMessageSize)
        => maxMessageSize == MaxMessageSize ? this : this with { MaxMessageSize = maxMessageSize };

    /// <summary>Whether every flag in <paramref name="features"/> is provided.</summary>
    /// <param name="features">One or more flags.</param>
    public bool Supports(BusFeatures features) => (Features & features) == features;

    /// <summary>
    /// The backend's explanation for the first flag in <paramref name="features"/> that it does not provide,
    /// or <see langword="null"/> when all are provided.
    /// </summary>
    /// <param name="features">One or more flags.</param>
    public string? ExplainMissing(BusFeatures features)
    {
        var missing = features & ~Features;
        if (missing == BusFeatures.None)
        {
            return null;
        }

        foreach (var flag in Enum.GetValues<BusFeatures>())
        {
            if (flag != BusFeatures.None && (missing & flag) == flag)
            {
                return Remarks.TryGetValue(flag, out var why)
                    ? $"{Backend} does not provide {flag}: {why}"
                    : $"{Backend} does not provide {flag}";
            }
        }

        return $"{Backend} does not provide {missing}";
    }
}
