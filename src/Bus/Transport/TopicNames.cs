namespace Bus.Transport;

/// <summary>Topic-name rules shared by transports.</summary>
public static class TopicNames
{
    /// <summary>
    /// Allows ASCII letters, digits, '.', '_' and '-': a set every supported broker accepts. Returns why a name is
    /// illegal, or <see langword="null"/>.
    /// </summary>
    /// <param name="topic">A non-empty name.</param>
    public static string? ValidateConservative(string topic)
    {
        foreach (var c in topic)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
            {
                return $"character '{Printable(c)}' is not allowed (use letters, digits, '.', '_' and '-')";
            }
        }

        return topic is "." or ".." ? "'.' and '..' are reserved" : null;
    }

    private static string Printable(char c) => char.IsControl(c) || char.IsWhiteSpace(c) ? $"\\u{(int)c:x4}" : c.ToString();
}
