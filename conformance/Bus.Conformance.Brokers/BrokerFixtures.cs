using Bus.Conformance.Brokers.Internal;

namespace Bus.Conformance.Brokers;

/// <summary>
/// Chooses, by configuration, where each broker comes from, in this order:
/// <list type="number">
/// <item><description><c>BUS_TEST_NAME_URL</c> is set: that endpoint, no container.</description></item>
/// <item><description>The official image (<see cref="BrokerBackend.OfficialImage"/>, or <c>BUS_TEST_NAME_IMAGE</c>) when
/// <c>BUS_TEST_IMAGES=official</c> (pulled if missing), or when <c>BUS_TEST_IMAGES=auto</c> (the default) and the image is
/// already present locally.</description></item>
/// <item><description>The local route, by default the image <c>local/NAME:bookworm</c> that <c>scripts/provision.sh</c>
/// builds, if present.</description></item>
/// </list>
/// Deciding never pulls and never waits on a registry: image presence is asked of the Docker daemon with a short timeout.
/// </summary>
public static class BrokerFixtures
{
    /// <summary>The environment variable that selects <see cref="ImageMode"/>.</summary>
    public const string ImageModeVariable = "BUS_TEST_IMAGES";

    private static readonly Lazy<IReadOnlyDictionary<BrokerKind, BrokerBackend>> LazyBackends = new(DiscoverBackends);

    /// <summary>The backends of this assembly, one per <see cref="BrokerKind"/> that has one.</summary>
    public static IReadOnlyList<BrokerBackend> Backends => [.. LazyBackends.Value.Values.OrderBy(b => b.Kind)];

    /// <summary>Which images fixtures may use, from <see cref="ImageModeVariable"/>; default <see cref="BrokerImageMode.Auto"/>.</summary>
    /// <exception cref="InvalidOperationException">The variable has a value other than auto, official or local.</exception>
    public static BrokerImageMode ImageMode
    {
        get
        {
            var value = Environment.GetEnvironmentVariable(ImageModeVariable);
            if (string.IsNullOrWhiteSpace(value))
            {
                return BrokerImageMode.Auto;
            }

            return Enum.TryParse<BrokerImageMode>(value.Trim(), ignoreCase: true, out var mode) && Enum.IsDefined(mode)
                ? mode
                : throw new InvalidOperationException($"{ImageModeVariable}={value} is not one of auto, official, local.");
        }
    }

    /// <summary>The backend for <paramref name="kind"/>.</summary>
    /// <param name="kind">The broker.</param>
    /// <returns>The backend.</returns>
    /// <exception cref="BrokerUnavailableException">No backend class exists for <paramref name="kind"/>.</exception>
    public static BrokerBackend GetBackend(BrokerKind kind) =>
        LazyBackends.Value.TryGetValue(kind, out var backend)
            ? backend
            : throw new BrokerUnavailableException(kind, $"no backend for {kind} in {typeof(BrokerFixtures).Assembly.GetName().Name}");

    /// <summary>Chooses where <paramref name="kind"/> comes from (see <see cref="BrokerFixtures"/>) and creates its fixture.</summary>
    /// <param name="kind">The broker.</param>
    /// <param name="cancellationToken">Cancels the look-up.</param>
    /// <returns>The fixture, not yet started: call <see cref="BrokerFixture.StartAsync"/>.</returns>
    /// <exception cref="BrokerUnavailableException">No route is configured or present; the reason says what was tried.</exception>
    public static async Task<BrokerFixture> CreateAsync(BrokerKind kind, CancellationToken cancellationToken = default)
    {
        var backend = GetBackend(kind);

        var url = Environment.GetEnvironmentVariable(backend.UrlVariable);
        if (!string.IsNullOrWhiteSpace(url))
        {
            return Uri.TryCreate(url.Trim(), UriKind.Absolute, out var uri)
                ? new EndpointBrokerFixture(backend, uri)
                : throw new BrokerUnavailableException(kind, $"{backend.UrlVariable}={url} is not an absolute URI");
        }

        BrokerImageMode mode;
        try
        {
            mode = ImageMode;
        }
        catch (InvalidOperationException e)
        {
            throw new BrokerUnavailableException(kind, e.Message, innerException: e);
        }

        var hasOfficial = backend.TryGetOfficialImage(out var official);
        if (mode == BrokerImageMode.Official)
        {
            return hasOfficial
                ? new ContainerBrokerFixture(backend, official!, allowPull: true)
                : throw new BrokerUnavailableException(kind, $"{backend.DisplayName} has no official image ({ImageModeVariable}=official)");
        }

        try
        {
            if (mode == BrokerImageMode.Auto && hasOfficial && await DockerHost.ImageExistsAsync(official!, cancellationToken).ConfigureAwait(false))
            {
                return new ContainerBrokerFixture(backend, official!, allowPull: false);
            }

            return await backend.CreateLocalFixtureAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DockerUnavailableException e)
        {
            throw new BrokerUnavailableException(kind, e.Message, innerException: e.InnerException);
        }
        catch (BrokerUnavailableException e) when (mode == BrokerImageMode.Auto && hasOfficial)
        {
            throw new BrokerUnavailableException(kind, $"{e.Reason}; the official image {official} is not present either ({ImageModeVariable}=official pulls it), and {backend.UrlVariable} is not set", e.LogTail, e);
        }
    }

    private static IReadOnlyDictionary<BrokerKind, BrokerBackend> DiscoverBackends() =>
        typeof(BrokerBackend).Assembly.GetTypes()
            .Where(t => t.IsSubclassOf(typeof(BrokerBackend)) && !t.IsAbstract)
            .Select(t => (BrokerBackend)Activator.CreateInstance(t, nonPublic: true)!)
            .ToDictionary(b => b.Kind);
}
