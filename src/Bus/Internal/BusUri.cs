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
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)} '{UriRedaction.RedactText(url)}' has no scheme; use a URI such as memory:// or rabbitmq://host.");
        }

        var scheme = url[..schemeEnd];
        if (!Uri.CheckSchemeName(scheme))
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)}: scheme '{scheme}' is not a valid URI scheme.");
        }

        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.Url)} '{UriRedaction.RedactText(url)}' is not a valid URI (check the host, the port and that special characters in the user name or password are percent-encoded).");
        }

        return uri;
    }

    /// <summary>The decoded password in a URI's user info, if any, so it can be scrubbed from client messages.</summary>
    public static string? PasswordOf(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri))
        {
            return null;
        }

        var colon = uri.UserInfo.IndexOf(':');
        if (colon < 0)
        {
            return null;
        }

        var password = Uri.UnescapeDataString(uri.UserInfo[(colon + 1)..]);
        return password.Length == 0 ? null : password;
    }
}
