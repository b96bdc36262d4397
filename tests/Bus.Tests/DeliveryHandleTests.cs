using Bus.Transport;
using Xunit;

namespace Bus.Tests;

public class DeliveryHandleTests
{
    [Fact]
    public void A_handle_formats_the_position_when_it_is_first_read_and_only_then()
    {
        var handle = new CountingHandle("1700000000000-7");
        var message = new ReceivedMessage("t", new byte[] { 1 }, null, null, "id-1", null, null, null, 1, handle, DateTimeOffset.UnixEpoch, 42);

        Assert.Equal(0, handle.Calls);
        Assert.Same(handle, message.TransportState);
        Assert.Equal(42, message.DeliveryTag);
        Assert.Equal("1700000000000-7", message.Position);
        Assert.Equal("1700000000000-7", message.Position);
        Assert.Equal(1, handle.Calls);
    }

    [Fact]
    public void A_message_needs_a_handle_to_format_its_position()
        => Assert.Throws<ArgumentNullException>(() => new ReceivedMessage("t", default, null, null, "id-1", null, null, null, 1, (DeliveryHandle)null!, DateTimeOffset.UnixEpoch));

    [Fact]
    public void A_position_given_as_text_wins_over_a_handle_given_as_state()
    {
        var handle = new CountingHandle("from the handle");
        var message = new ReceivedMessage("t", default, null, null, "id-1", null, null, null, 1, "as text", DateTimeOffset.UnixEpoch, 0, handle);

        Assert.Equal("as text", message.Position);
        Assert.Equal(0, handle.Calls);
    }

    private sealed class CountingHandle(string position) : DeliveryHandle
    {
        public int Calls { get; private set; }

        public override string FormatPosition()
        {
            Calls++;
            return position;
        }
    }
}
