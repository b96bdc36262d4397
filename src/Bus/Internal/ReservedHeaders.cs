namespace Bus.Internal;

/// <summary>
/// Header names an application may not set: the RabbitMQ and Kafka adapters carry the message's own fields in headers
/// of these names (RabbitMQ where an AMQP property is too short or missing, Kafka always), so on RabbitMQ an
/// application header <c>bus-message-id</c> came back as the message id and Kafka's adapter dropped it. Refused at
/// publish, the same on every backend.
/// </summary>
internal static class ReservedHeaders
{
    private static readonly string[] All = ["bus-key", "bus-message-id", "bus-correlation-id", "bus-content-type", "bus-reply-to"];

    private static readonly HashSet<string> Names = new(All, StringComparer.Ordinal);

    /// <summary>The names, for messages.</summary>
    public static readonly string List = string.Join(", ", All);

    public static bool IsReserved(string name) => Names.Contains(name);
}
