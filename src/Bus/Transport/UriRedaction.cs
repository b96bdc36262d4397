namespace Bus.Transport;

/// <summary>Removes secrets from connection URIs before they reach a log or an exception.</summary>
public static class UriRedaction
{
    private static readonly string[] SecretQueryNames = ["password", "secret", "token", "key", "secretkey", "secret_key", "sessiontoken", "sasl_password", "pass"];

    /// <summary>
    /// The URI with the password in its user info and any secret-looking query value replaced by <c>***</c>. User info
    /// without a colon is replaced whole: Redis clients read <c>redis://secret@host</c> as a password, and a user name
    /// is little to lose from a log line.
    /// </summary>
    /// <param name="uri">The URI.</param>
    public static string Redact(Uri uri)
    {
        ArgumentNullException.ThrowIfNull(uri);
        if (string.IsNullOrEmpty(uri.UserInfo) && !HasSecretQuery(uri.Query))
        {
            return uri.OriginalString;
        }

        // Rebuild the user info by hand: UriBuilder rejects an empty user with a password (redis://:secret@host).
        var builder = new UriBuilder(uri) { UserName = "", Password = "" };
        var colon = uri.UserInfo.IndexOf(':', StringComparison.Ordinal);
        var userInfo = uri.UserInfo.Length == 0 ? "" : colon < 0 ? "***" : uri.UserInfo[..colon] + ":***";

        if (builder.Query.Length > 1)
        {
            (builder.Query, var secretSeen) = RedactQuery(builder.Query[1..]);
            if (secretSeen && builder.Fragment.Length > 1)
            {
                builder.Fragment = "***"; // after a secret, like the query's later parts
            }
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
    /// The text of a possibly unparsable URI with the password of its user info (anything between the first colon and
    /// the last "@" before the query, or all of it without a colon) and every secret-looking query value replaced by
    /// <c>***</c>. Text without "://" (a forgotten scheme: <c>guest:secret@host</c>) is redacted the same way. Best
    /// effort: in text that is not a URI, a password with an unescaped '?' or '#' cannot be told from a query, so core's
    /// own errors about bad URIs do not echo the text at all.
    /// </summary>
    /// <param name="url">The text as configured.</param>
    public static string RedactText(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        var scheme = url.IndexOf("://", StringComparison.Ordinal);
        var start = scheme >= 0 ? scheme + 3 : url.StartsWith("//", StringComparison.Ordinal) ? 2 : 0;
        var authorityEnd = url.IndexOfAny(['?', '#'], Math.Min(start, url.Length));
        var beforeQuery = authorityEnd < 0 ? url.Length : authorityEnd;
        var at = beforeQuery == 0 ? -1 : url.LastIndexOf('@', beforeQuery - 1);
        var text = url;
        if (at >= start)
        {
            var colon = url.IndexOf(':', start, at - start);
            text = colon >= 0 ? url[..(colon + 1)] + "***" + url[at..] : url[..start] + "***" + url[at..];
        }

        var query = text.IndexOf('?', Math.Min(start, text.Length));
        if (query < 0 || query == text.Length - 1)
        {
            return text;
        }

        var end = text.IndexOf('#', query);
        var (redacted, secretSeen) = RedactQuery(end < 0 ? text[(query + 1)..] : text[(query + 1)..end]);
        return text[..(query + 1)] + redacted + (end < 0 ? "" : secretSeen ? "#***" : text[end..]);
    }

    /// <summary>
    /// A query (without its '?') with the value of every secret-looking name replaced by <c>***</c>, and every part after
    /// the first such value too: a secret with an unescaped '&amp;' (<c>password=ab&amp;cd</c>) reads as a secret and
    /// more parameters, which are pieces of it (the callers mask the fragment after it for an unescaped '#'). Parameters
    /// placed before the secrets stay readable.
    /// </summary>
    private static (string Query, bool SecretSeen) RedactQuery(string query)
    {
        var parts = query.Split('&');
        var secretSeen = false;
        for (var i = 0; i < parts.Length; i++)
        {
            if (secretSeen)
            {
                parts[i] = "***";
                continue;
            }

            var equals = parts[i].IndexOf('=');
            if (equals > 0 && IsSecretName(SafeUnescape(parts[i][..equals])))
            {
                parts[i] = parts[i][..(equals + 1)] + "***";
                secretSeen = true;
            }
        }

        return (string.Join('&', parts), secretSeen);
    }

    /// <summary>
    /// Text that must not appear in a message: the password of the URL's user info, the value of every secret-looking
    /// query parameter or <see cref="BusOptions.Settings"/> entry, and, as pieces, the names and values of the query's
    /// parts (and its fragment) after such a value: pieces of the secret if a '&amp;' or '#' in it was not
    /// percent-encoded. Each as decoded and as written.
    /// </summary>
    internal static IReadOnlyList<(string Text, bool Piece)> SecretsIn(BusOptions options)
    {
        var secrets = new List<(string Text, bool Piece)>();
        void Add(string text, bool piece)
        {
            if (text.Length > 0)
            {
                secrets.Add((text, piece));
                var escaped = Uri.EscapeDataString(text);
                if (escaped != text)
                {
                    secrets.Add((escaped, piece));
                }
            }
        }

        var url = options.Url ?? "";
        if (Internal.BusUri.PasswordOf(url) is { } password)
        {
            Add(password, piece: false);
        }

        foreach (var (name, value) in options.Settings)
        {
            if (IsSecretName(name))
            {
                Add(value ?? "", piece: false);
            }
        }

        var scheme = url.IndexOf("://", StringComparison.Ordinal);
        var query = url.IndexOf('?', Math.Max(0, scheme));
        if (query < 0)
        {
            return Ordered(secrets);
        }

        var end = url.IndexOf('#', query);
        var secretSeen = false;
        foreach (var (name, value, afterSecret) in QueryParts(end < 0 ? url[(query + 1)..] : url[(query + 1)..end]))
        {
            secretSeen |= afterSecret;
            if (afterSecret)
            {
                Add(name, piece: true);
                Add(value ?? "", piece: true);
            }
            else if (value is not null && IsSecretName(name))
            {
                Add(value, piece: false);
                secretSeen = true;
            }
        }

        if (secretSeen && end >= 0)
        {
            Add(SafeUnescape(url[(end + 1)..]), piece: true);
        }

        return Ordered(secrets);

        // Longest first, so that a secret that contains another is replaced whole.
        static List<(string Text, bool Piece)> Ordered(List<(string Text, bool Piece)> secrets)
            => [.. secrets.OrderByDescending(secret => secret.Text.Length)];
    }

    /// <summary>
    /// <paramref name="text"/> with <paramref name="secrets"/> replaced by <c>***</c>. A secret value of 3 characters or
    /// more wherever it occurs; a piece, or a shorter value, only where it stands quoted ('cd' or "cd", as errors name
    /// settings and values): replaced anywhere, a piece that is an ordinary setting after a secret ("us-east-1", "true")
    /// or a one-letter value would blank out ordinary words.
    /// </summary>
    internal static string Scrub(string text, IReadOnlyList<(string Text, bool Piece)> secrets)
    {
        foreach (var (secret, piece) in secrets)
        {
            if (!piece && secret.Length >= 3)
            {
                text = text.Replace(secret, "***", StringComparison.Ordinal);
            }
            else
            {
                text = text.Replace($"\"{secret}\"", "\"***\"", StringComparison.Ordinal).Replace($"'{secret}'", "'***'", StringComparison.Ordinal);
            }
        }

        return text;
    }

    /// <summary>
    /// A query's parameters (without the '?'), decoded, in order; a value is null where the part has no '='. Each says
    /// whether it comes after a secret's value: with an unescaped '&amp;' in that value, it is a piece of it.
    /// </summary>
    internal static IEnumerable<(string Name, string? Value, bool AfterSecret)> QueryParts(string query)
    {
        var secretSeen = false;
        foreach (var part in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = part.IndexOf('=');
            var name = SafeUnescape(equals < 0 ? part : part[..equals]);
            yield return (name, equals < 0 ? null : SafeUnescape(part[(equals + 1)..]), secretSeen);
            secretSeen |= equals > 0 && IsSecretName(name);
        }
    }

    private static string SafeUnescape(string text)
    {
        try
        {
            return Uri.UnescapeDataString(text);
        }
        catch (UriFormatException)
        {
            return text;
        }
    }

    private static bool HasSecretQuery(string query)
        => query.Length > 1 && QueryParts(query[1..]).Any(part => part.Value is not null && IsSecretName(part.Name));

    internal static bool IsSecretName(string name)
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
