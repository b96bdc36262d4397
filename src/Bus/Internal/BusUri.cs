using Bus.Transport;

namespace Bus.Internal;

/// <summary>Parses connection URIs with errors that name the wrong part and never echo a password.</summary>
internal static class BusUri
{
    public static Uri Parse(string url)
    {
        if (string.IsNullOrWhiteSpace(url))
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)} is empty; use a URI such as memory:// or rabbitmq://host.");
        }

        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0)
        {
            // Not echoed, here and below: text that is not a URI cannot be told apart from the password it may hold.
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)} has no scheme ('scheme://' is missing); use a URI such as memory:// or rabbitmq://host.");
        }

        var scheme = url[..schemeEnd];
        if (!Uri.CheckSchemeName(scheme))
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)}: the text before '://' is not a valid URI scheme (a letter, then letters, digits, '+', '-' or '.').");
        }

        if (!Uri.TryCreate(FirstHostOnly(url, schemeEnd + 3), UriKind.Absolute, out var uri))
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)} ({scheme}://…) is not a valid URI (check the host, the port and that special characters in the user name or password are percent-encoded).");
        }

        return uri;
    }

    /// <summary>
    /// A URI may list several hosts (<c>kafka://h1:9092,h2:9092</c>) which <see cref="Uri"/> cannot hold: the parsed URI
    /// keeps the first, and transports that accept a list read the rest from <see cref="BusOptions.Url"/>.
    /// </summary>
    private static string FirstHostOnly(string url, int authorityStart)
    {
        var authorityEnd = url.IndexOfAny(['/', '?', '#'], authorityStart);
        if (authorityEnd < 0)
        {
            authorityEnd = url.Length;
        }

        var comma = url.IndexOf(',', authorityStart, authorityEnd - authorityStart);
        return comma < 0 ? url : url[..comma] + url[authorityEnd..];
    }

    /// <summary>The URI's scheme, without parsing the rest (which may list several hosts).</summary>
    public static string SchemeOf(string url)
    {
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        return schemeEnd <= 0 ? "" : url[..schemeEnd].ToLowerInvariant();
    }

    /// <summary>
    /// The decoded password in a URI's user info, if any, so it can be scrubbed from client messages: what follows the
    /// colon, or the whole user info when it has none (Redis reads <c>redis://secret@host</c> as a password).
    /// </summary>
    public static string? PasswordOf(string url)
    {
        var schemeEnd = url.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd <= 0 || !Uri.TryCreate(FirstHostOnly(url, schemeEnd + 3), UriKind.Absolute, out var uri))
        {
            return null;
        }

        var colon = uri.UserInfo.IndexOf(':');
        var password = Uri.UnescapeDataString(colon < 0 ? uri.UserInfo : uri.UserInfo[(colon + 1)..]);
        return password.Length == 0 ? null : password;
    }
}
