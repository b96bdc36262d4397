using System.Diagnostics.CodeAnalysis;
using Bus.Conformance.Brokers.Internal;

namespace Bus.Conformance.Brokers;

/// <summary>
/// Everything the fixtures know about one kind of broker: its images, ports, URI and readiness probe. Adding a backend
/// is one class deriving from this one, in this assembly, with a parameterless constructor:
/// <see cref="BrokerFixtures"/> finds it.
/// </summary>
/// <remarks>
/// A backend whose broker cannot run as a plain container on the project's machines (Kafka as librdkafka's mock
/// cluster, SQS as the fauxqs process) overrides <see cref="CreateLocalFixtureAsync"/> and returns its own
/// <see cref="BrokerFixture"/>; the endpoint route (<c>BUS_TEST_NAME_URL</c>) and the official-image route stay the same.
/// </remarks>
public abstract class BrokerBackend
{
    /// <summary>The broker this backend describes.</summary>
    public abstract BrokerKind Kind { get; }

    /// <summary>The broker's name for people, e.g. <c>RabbitMQ</c>.</summary>
    public abstract string DisplayName { get; }

    /// <summary>The upper-case name used in environment variables, e.g. <c>RABBITMQ</c>.</summary>
    public string VariableName => Kind.ToString().ToUpperInvariant();

    /// <summary>The variable that points the tests at an endpoint someone else runs, e.g. <c>BUS_TEST_RABBITMQ_URL</c>.</summary>
    public string UrlVariable => $"BUS_TEST_{VariableName}_URL";

    /// <summary>The variable that replaces <see cref="OfficialImage"/>, e.g. <c>BUS_TEST_RABBITMQ_IMAGE=rabbitmq:4.1</c>.</summary>
    public string ImageVariable => $"BUS_TEST_{VariableName}_IMAGE";

    /// <summary>The official image used where images can be pulled, or <see langword="null"/> if there is none. Default: none.</summary>
    public virtual string? OfficialImage => null;

    /// <summary>
    /// The image <c>scripts/provision.sh</c> builds locally (<c>local/NAME:bookworm</c>), or <see langword="null"/>
    /// if there is none. Default: none.
    /// </summary>
    public virtual string? LocalImage => null;

    /// <summary>
    /// How long a start may take until the broker answers its probe. Default: 90 seconds; ten minutes more when the
    /// image may be pulled (<c>BUS_TEST_IMAGES=official</c>).
    /// </summary>
    public virtual TimeSpan StartupTimeout => TimeSpan.FromSeconds(90);

    /// <summary>The container ports by name, e.g. <c>amqp</c> → 5672. The fixture binds a free host port to each.</summary>
    protected internal abstract IReadOnlyDictionary<string, int> ContainerPorts { get; }

    /// <summary>How to run <paramref name="image"/> with the chosen host ports.</summary>
    /// <param name="image">The official or the local image (the two are told apart by name where they differ).</param>
    /// <param name="hostPorts">The host port chosen for each name in <see cref="ContainerPorts"/>.</param>
    /// <returns>The container to start. The default maps each host port to its container port and nothing else.</returns>
    protected internal virtual ContainerSpec DescribeContainer(string image, IReadOnlyDictionary<string, int> hostPorts) =>
        new() { Image = image, PortBindings = MapPorts(hostPorts) };

    /// <summary>The URI clients use, given the host and the host ports chosen.</summary>
    /// <param name="host">The host clients connect to (127.0.0.1).</param>
    /// <param name="hostPorts">The host port chosen for each name in <see cref="ContainerPorts"/>.</param>
    /// <returns>The connection URI, e.g. <c>amqp://guest:guest@127.0.0.1:PORT</c>.</returns>
    protected internal abstract Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts);

    /// <summary>Further named endpoints (see <see cref="BrokerFixture.Endpoints"/>). Default: none.</summary>
    /// <param name="host">The host clients connect to (127.0.0.1).</param>
    /// <param name="hostPorts">The host port chosen for each name in <see cref="ContainerPorts"/>.</param>
    /// <returns>The endpoints by name.</returns>
    protected internal virtual IReadOnlyDictionary<string, Uri> CreateEndpoints(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new Dictionary<string, Uri>();

    /// <summary>
    /// Checks once, with the broker's own protocol, that it is ready for clients, and reads its version. The fixture
    /// calls it repeatedly until it succeeds or the startup timeout passes.
    /// </summary>
    /// <param name="connectionUri">The broker's <see cref="BrokerFixture.ConnectionUri"/>.</param>
    /// <param name="endpoints">The broker's <see cref="BrokerFixture.Endpoints"/> (empty for an endpoint from a URL variable).</param>
    /// <param name="cancellationToken">Bounds this one attempt.</param>
    /// <returns>The broker and its version as reported by the broker, e.g. <c>RabbitMQ 3.10.8</c>.</returns>
    /// <exception cref="Exception">Any exception means "not ready yet"; its message is reported if the timeout passes.</exception>
    protected internal abstract Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken);

    /// <summary>
    /// The fixture for this machine when neither an endpoint nor the official image is chosen: by default a container
    /// of <see cref="LocalImage"/> if that image is present. Override for routes that are not a plain container.
    /// </summary>
    /// <param name="cancellationToken">Cancels the look-up.</param>
    /// <returns>A fixture, not yet started.</returns>
    /// <exception cref="BrokerUnavailableException">There is no local route, or its image is missing; the reason says which.</exception>
    protected internal virtual async Task<BrokerFixture> CreateLocalFixtureAsync(CancellationToken cancellationToken)
    {
        if (LocalImage is null)
        {
            throw new BrokerUnavailableException(Kind, $"no local route for {DisplayName} on this machine (no local image, BUS_TEST_IMAGES={BrokerFixtures.ImageMode.ToString().ToLowerInvariant()}; set {UrlVariable} or allow the official image)");
        }

        if (!await DockerHost.ImageExistsAsync(LocalImage, cancellationToken).ConfigureAwait(false))
        {
            throw new BrokerUnavailableException(Kind, $"image {LocalImage} is not present (scripts/provision.sh builds it)");
        }

        return CreateContainerFixture(LocalImage, allowPull: false);
    }

    /// <summary>A container fixture for <paramref name="image"/> described by this backend.</summary>
    /// <param name="image">The image to run.</param>
    /// <param name="allowPull">Whether a missing image may be pulled; false means it must be present locally.</param>
    /// <returns>A fixture, not yet started.</returns>
    protected BrokerFixture CreateContainerFixture(string image, bool allowPull) => new ContainerBrokerFixture(this, image, allowPull);

    /// <summary>Maps each host port to the container port of the same name.</summary>
    /// <param name="hostPorts">The host port chosen for each name in <see cref="ContainerPorts"/>.</param>
    /// <returns>Host port to container port.</returns>
    protected IReadOnlyDictionary<int, int> MapPorts(IReadOnlyDictionary<string, int> hostPorts)
    {
        ArgumentNullException.ThrowIfNull(hostPorts);
        return hostPorts.ToDictionary(p => p.Value, p => ContainerPorts[p.Key]);
    }

    /// <summary>The official image, or its replacement from <see cref="ImageVariable"/>.</summary>
    /// <param name="image">The image to use, or <see langword="null"/> when the backend has no official image.</param>
    /// <returns>Whether there is an official image.</returns>
    internal bool TryGetOfficialImage([NotNullWhen(true)] out string? image)
    {
        var overridden = Environment.GetEnvironmentVariable(ImageVariable);
        image = string.IsNullOrWhiteSpace(overridden) ? OfficialImage : overridden.Trim();
        return image is not null;
    }
}
