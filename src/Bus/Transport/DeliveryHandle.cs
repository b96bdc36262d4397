namespace Bus.Transport;

/// <summary>
/// A transport's object for settling one delivery (<see cref="ReceivedMessage.TransportState"/>) that can also write
/// the delivery's position as text. A message created with one formats its <see cref="ReceivedMessage.Position"/> only
/// when it is first read: most deliveries are settled without anyone asking, and a position string per delivery was a
/// measurable share of a stream consumer's allocations.
/// </summary>
public abstract class DeliveryHandle
{
    /// <summary>
    /// The delivery's position as <see cref="StartPosition.At(string)"/> takes it. May be called more than once (by
    /// threads reading <see cref="ReceivedMessage.Position"/> together) and must give the same text each time.
    /// </summary>
    public abstract string FormatPosition();
}
