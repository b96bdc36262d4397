using System.Text;

namespace Bus.Transport;

/// <summary>Message size estimates for limit checks.</summary>
public static class MessageSize
{
    /// <summary>Body bytes plus the UTF-8 bytes of key, ids, content type and headers.</summary>
    /// <param name="message">The message.</param>
    public static long Estimate(OutgoingMessage message)
    {
        long size = message.Body.Length;
        size += Utf8(message.Key) + IdBytes(message) + Utf8(message.CorrelationId) + Utf8(message.ContentType) + Utf8(message.ReplyTo);
        if (message.HeadersOrNull is { } headers)
        {
            foreach (var (name, value) in headers)
            {
                size += Utf8(name) + Utf8(value);
            }
        }

        return size;
    }

    /// <summary>How many characters key, ids, content type and headers hold: a cheap bound for <see cref="Estimate"/>.</summary>
    /// <param name="message">The message.</param>
    public static long CharactersOutsideBody(OutgoingMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        long count = (message.Key?.Length ?? 0) + message.MessageIdLength + (message.CorrelationId?.Length ?? 0) + (message.ContentType?.Length ?? 0) + (message.ReplyTo?.Length ?? 0);
        if (message.HeadersOrNull is { } headers)
        {
            foreach (var (name, value) in headers)
            {
                count += name.Length + value.Length;
            }
        }

        return count;
    }

    // An id the bus assigned and nobody has read yet is 32 ASCII hex digits; reading MessageId would format it.
    private static int IdBytes(OutgoingMessage message) => message.MessageIdText is { } text ? Utf8(text) : message.MessageIdLength;

    private static int Utf8(string? text) => text is null ? 0 : Encoding.UTF8.GetByteCount(text);
}
