using System.Net;
using System.Net.Sockets;

namespace Bus.Conformance.Brokers.Internal;

/// <summary>
/// Free ports on 127.0.0.1, chosen before a container is created so that the container can be stopped and started
/// again on the same port (a port Docker picks is given back on stop and may differ on start).
/// </summary>
internal static class HostPorts
{
    private static readonly HashSet<int> Handed = [];

    /// <summary>One free port for each name.</summary>
    public static IReadOnlyDictionary<string, int> Allocate(IEnumerable<string> names)
    {
        lock (Handed)
        {
            return names.ToDictionary(name => name, _ => Next(), StringComparer.Ordinal);
        }
    }

    private static int Next()
    {
        // The kernel hands out a free ephemeral port; remember it so this process never hands it out twice.
        for (var attempt = 0; ; attempt++)
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            var port = ((IPEndPoint)listener.LocalEndpoint).Port;
            listener.Stop();
            if (Handed.Add(port) || attempt > 100)
            {
                return port;
            }
        }
    }
}
