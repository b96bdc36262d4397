using Bus.Internal;

namespace Bus.Transport;

/// <summary>Message ids on the wire. For transport implementations.</summary>
public static class MessageIdEncoding
{
    /// <summary>
    /// The message id as UTF-8: an empty array when it has none. An id the bus assigned is formatted into a new array
    /// on each call and not kept as text: reading <see cref="OutgoingMessage.MessageId"/> would leave a string on the
    /// caller's message, and when that message is old (an application's batch built ahead of publishing) every such
    /// string survives the next collection.
    /// </summary>
    /// <param name="message">The message being published.</param>
    /// <returns>A new array the caller owns.</returns>
    public static byte[] GetUtf8(OutgoingMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.MessageIdText is { } text)
        {
            return System.Text.Encoding.UTF8.GetBytes(text);
        }

        if (message.AssignedId == default)
        {
            return [];
        }

        var utf8 = new byte[32];
        MessageIds.FormatUtf8(message.AssignedId, utf8);
        return utf8;
    }
}
