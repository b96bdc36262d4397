using System.Globalization;
using System.Text;
using Bus.Conformance.Brokers.Internal;
using DotNet.Testcontainers.Builders;
using DotNet.Testcontainers.Containers;
using DotNet.Testcontainers.Images;
using Microsoft.Extensions.Logging.Abstractions;

namespace Bus.Conformance.Brokers;

/// <summary>
/// A broker container of a test's own that speaks TLS only, with <see cref="TestCertificates"/> in <c>/tls</c>
/// (<c>ca.pem</c>, <c>server.pem</c>, <c>server.key</c>) and the CA's certificate in a file on the host
/// (<see cref="CaFile"/>): for tests of a client's TLS settings against a real server. Uses the backend's locally
/// built image where present, else its official image; never pulls. Its port is bound to 127.0.0.1 only.
/// </summary>
public sealed class TlsBrokerContainer : IAsyncDisposable
{
    private readonly IContainer _container;

    private TlsBrokerContainer(IContainer container, string image, int port, string caFile)
    {
        _container = container;
        Image = image;
        Port = port;
        CaFile = caFile;
    }

    /// <summary>A temporary file with the CA's certificate (PEM), for the client's trust setting; deleted on dispose.</summary>
    public string CaFile { get; }

    /// <summary>The image it runs.</summary>
    public string Image { get; }

    /// <summary>The host port (on 127.0.0.1) of the TLS listener.</summary>
    public int Port { get; }

    /// <summary>Starts the container and waits until it logs <paramref name="readyLine"/>.</summary>
    /// <param name="kind">The broker.</param>
    /// <param name="certificates">The server's certificate, key and CA, copied to <c>/tls</c>.</param>
    /// <param name="tlsPort">The container port of the TLS listener.</param>
    /// <param name="readyLine">A line the broker logs once it accepts connections.</param>
    /// <param name="command">The command, or empty for the image's own.</param>
    /// <param name="files">More files to copy in (path → content), e.g. a configuration file.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>The started container.</returns>
    public static async Task<TlsBrokerContainer> StartAsync(
        BrokerKind kind,
        TestCertificates certificates,
        int tlsPort,
        string readyLine,
        IReadOnlyList<string>? command = null,
        IReadOnlyDictionary<string, string>? files = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(certificates);
        var backend = BrokerFixtures.GetBackend(kind);
        var image = backend.LocalImage is { } local && await DockerHost.ImageExistsAsync(local, cancellationToken).ConfigureAwait(false)
            ? local
            : backend.OfficialImage ?? throw new BrokerUnavailableException(kind, $"{backend.DisplayName} has neither a local nor an official image");
        var builder = new ContainerBuilder(image)
            .WithName($"bus-{backend.VariableName.ToLowerInvariant()}-tls-{Guid.NewGuid():N}")
            .WithLabel(DockerHost.ProcessLabel, Environment.ProcessId.ToString(CultureInfo.InvariantCulture))
            .WithLabel(DockerHost.KindLabel, kind.ToString())
            .WithImagePullPolicy(PullPolicy.Never)
            .WithLogger(NullLogger.Instance)
            .WithResourceMapping(Encoding.ASCII.GetBytes(certificates.CaPem), "/tls/ca.pem")
            .WithResourceMapping(Encoding.ASCII.GetBytes(certificates.ServerPem), "/tls/server.pem")
            .WithResourceMapping(Encoding.ASCII.GetBytes(certificates.ServerKeyPem), "/tls/server.key")
            .WithPortBinding(tlsPort, assignRandomHostPort: true)
            .WithCreateParameterModifier(DockerHost.LoopbackOnlyWithoutHealthcheck)
            .WithWaitStrategy(Wait.ForUnixContainer().UntilMessageIsLogged(readyLine));
        foreach (var (path, content) in files ?? new Dictionary<string, string>())
        {
            builder = builder.WithResourceMapping(Encoding.UTF8.GetBytes(content), path);
        }

        if (command is { Count: > 0 })
        {
            builder = builder.WithCommand([.. command]);
        }

        var container = builder.Build();
        try
        {
            await container.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var (stdout, stderr) = await container.GetLogsAsync(timestampsEnabled: false, ct: CancellationToken.None).ConfigureAwait(false);
            await container.DisposeAsync().ConfigureAwait(false);
            var log = stdout + stderr;
            throw new BrokerUnavailableException(kind, $"{image} with TLS did not start ({ex.GetType().Name}: {ex.Message})", log[Math.Max(0, log.Length - 4000)..], ex);
        }

        return new TlsBrokerContainer(container, image, container.GetMappedPublicPort(tlsPort), certificates.WriteCaFile());
    }

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        await _container.DisposeAsync().ConfigureAwait(false);
        File.Delete(CaFile);
    }
}
