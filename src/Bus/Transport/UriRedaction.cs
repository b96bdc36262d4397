namespace Bus.Transport;

/// <summary>Removes secrets from connection URIs before they reach a log or an exception.</summary>
public static class UriRedaction
{
    private static readonly string[] SecretQueryNames = ["password", "secret", "token", "key", "secretkey", "secret_key", "sessiontoken", "sasl_password", "pass"];

    /// <summary>The URI with the password in its user info and any secret-looking query value replaced by <c>***</c>.</summary>
    /// <param name="uri">The URI.</param>
    public static string Redact(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (string.IsNullOrEmpty(uri.UserInfo) || !uri.UserInfo.Contains(':', StringComparison.Ordinal))
        {
            if (!HasSecretQuery(uri.Query))
            {
                return uri.OriginalString;
            }
        }

        // Rebuild the user info by hand: UriBuilder rejects an empty user with a password (redis://:secret@host).
        var builder = new UriBuilder(uri) { UserName = "", Password = "" };
        var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
        var userInfo = colon < 0 ? uri.UserInfo : uri.UserInfo[..colon] + ":***";

        if (builder.Query.Length > 1)
        {
            var parts = builder.Query[1..].Split('&');
            for (var i = 0; i < parts.Length; i++)
            {
                var equals = parts[i].IndexOf('=');
                if (equals > 0 && IsSecretName(Uri.UnescapeDataString(parts[i][..equals])))
                {
                    parts[i] = parts[i][..(equals + 1)] + "***";
                }
            }

            builder.Query = string.Join('&', parts);
        }

        var text = builder.Uri.GetComponents(UriComponents.AbsoluteUri, UriFormat.UriEscaped);
        if (builder.Port == -1 || uri.IsDefaultPort)
        {
            text = text.Replace($":{builder.Port}", "", StringComparison.Ordinal);
        }

        if (userInfo.Length == 0)
        {
            return text;
        }

        var hostStart = text.IndexOf("://", StringComparison.Ordinal) + 3;
        return text[..hostStart] + userInfo + "@" + text[hostStart..];
    }

    /// <summary>
    /// The text of a possibly unparsable URI with anything between "://" and "@" reduced to the user name, for
    /// error messages about bad URIs.
    /// </summary>
    /// <param name="url">The text as configured.</param>
    public static string RedactText(string url)
    {
        var scheme = url.IndexOf("://", StringComparison.Ordinal);
        var at = url.LastIndexOf('@');
        if (scheme < 0 || at < scheme)
        {
            return url;
        }

        var userInfo = url[(scheme + 3)..at];
        var colon = userInfo.IndexOf(':');
        return colon < 0 ? url : url[..(scheme + 3)] + userInfo[..colon] + ":***" + url[at..];
    }

    private static bool HasSecretQuery(string query)
    {
        if (query.Length <= 1)
        {
            return false;
        }

        foreach (var part in query[1..].Split('&'))
        {
            var equals = part.IndexOf('=');
            if (equals > 0 && IsSecretName(Uri.UnescapeDataString(part[..equals])))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsSecretName(string name)
    {
        foreach (var secret in SecretQueryNames)
        {
            if (name.Equals(secret, StringComparison.OrdinalIgnoreCase) || name.EndsWith(secret, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }
}
