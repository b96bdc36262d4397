namespace Bus.Transport;

/// <summary>
/// A transport's object for settling one delivery (<see cref="ReceivedMessage.TransportState"/>) that can also write
/// the delivery's position as text. A message created with the
/// <see cref="ReceivedMessage(string, ReadOnlyMemory{byte}, string?, IReadOnlyDictionary{string, string}?, string, string?, string?, string?, int, DeliveryHandle, DateTimeOffset, long)"/>
/// constructor formats its <see cref="ReceivedMessage.Position"/> only when it is first read: most deliveries are settled
/// without anyone asking, and a position string per delivery was a measurable share of a stream consumer's allocations.
/// (A handle passed as the <c>transportState</c> of the constructor that takes the position as text is not asked.)
/// </summary>
public abstract class DeliveryHandle
{
    /// <summary>
    /// The delivery's position as <see cref="StartPosition.At(string)"/> takes it: never <see langword="null"/>, and
    /// the same text at every call.
    /// </summary>
    /// <remarks>
    /// Called on whatever thread first reads <see cref="ReceivedMessage.Position"/> (more than once when threads read it
    /// together), at any time: before or after the delivery is settled, after its consumer is disposed, and while core
    /// dead-letters the message. So it must not throw, and should depend only on what the handle captured at delivery.
    /// </remarks>
    /// <returns>The position's text.</returns>
    public abstract string FormatPosition();
}
