using System.Net;

namespace Bus.Conformance.Brokers.Internal.Probes;

/// <summary>HTTP requests for probes: no proxy (the brokers are on loopback), no redirects, bounded by the caller.</summary>
internal static class HttpProbe
{
    private static readonly HttpClient Client = new(new SocketsHttpHandler { UseProxy = false, AllowAutoRedirect = false })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };

    /// <summary>GETs <paramref name="uri"/>; throws unless the status is 2xx. Returns the body.</summary>
    public static async Task<string> GetAsync(Uri uri, CancellationToken cancellationToken)
    {
        using var response = await Client.GetAsync(uri, cancellationToken).ConfigureAwait(false);
        var body = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode)
        {
            throw new HttpRequestException($"GET {uri.AbsolutePath} answered {(int)response.StatusCode}: {Shorten(body)}", null, response.StatusCode);
        }

        return body;
    }

    /// <summary>GETs <paramref name="uri"/>; any answer below 500 counts (an API that wants other parameters is still up).</summary>
    public static async Task<HttpStatusCode> GetStatusAsync(Uri uri, CancellationToken cancellationToken)
    {
        using var response = await Client.GetAsync(uri, cancellationToken).ConfigureAwait(false);
        return (int)response.StatusCode < 500
            ? response.StatusCode
            : throw new HttpRequestException($"GET {uri.AbsolutePath} answered {(int)response.StatusCode}", null, response.StatusCode);
    }

    private static string Shorten(string text) => text.Length <= 200 ? text : text[..200] + "...";
}
