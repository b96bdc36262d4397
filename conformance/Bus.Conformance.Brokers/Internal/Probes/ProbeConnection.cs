using System.Net.Sockets;
using System.Text;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>A TCP connection for one probe, with the few reads the probes need.</summary>
internal sealed class ProbeConnection : IAsyncDisposable
{
    private readonly TcpClient _client;

    private ProbeConnection(TcpClient client)
    {
        _client = client;
        Stream = client.GetStream();
    }

    public NetworkStream Stream { get; }

    public static async Task<ProbeConnection> OpenAsync(Uri uri, int defaultPort, CancellationToken cancellationToken)
    {
        var client = new TcpClient { NoDelay = true };
        try
        {
            await client.ConnectAsync(uri.Host, uri.IsDefaultPort || uri.Port < 0 ? defaultPort : uri.Port, cancellationToken).ConfigureAwait(false);
            return new ProbeConnection(client);
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    public ValueTask WriteAsync(byte[] bytes, CancellationToken cancellationToken) => Stream.WriteAsync(bytes, cancellationToken);

    public ValueTask WriteAsync(string text, CancellationToken cancellationToken) => Stream.WriteAsync(Encoding.UTF8.GetBytes(text), cancellationToken);

    public async Task<byte[]> ReadExactlyAsync(int count, CancellationToken cancellationToken)
    {
        var buffer = new byte[count];
        await Stream.ReadExactlyAsync(buffer, cancellationToken).ConfigureAwait(false);
        return buffer;
    }

    /// <summary>Reads up to and without the next CRLF (or LF).</summary>
    public async Task<string> ReadLineAsync(CancellationToken cancellationToken, int maxLength = 64 * 1024)
    {
        var line = new StringBuilder();
        var one = new byte[1];
        while (line.Length < maxLength)
        {
            await Stream.ReadExactlyAsync(one, cancellationToken).ConfigureAwait(false);
            if (one[0] == '\n')
            {
                return line.ToString().TrimEnd('\r');
            }

            line.Append((char)one[0]);
        }

        throw new InvalidDataException($"line longer than {maxLength} bytes");
    }

    public ValueTask DisposeAsync()
    {
        _client.Dispose();
        return ValueTask.CompletedTask;
    }
}
