using Bus.Internal;
using Xunit;

namespace Bus.Tests;

public class MessageIdTests
{
    [Fact]
    public void Ids_are_unique_version_7_uuids()
    {
        var ids = Enumerable.Range(0, 100_000).Select(_ => MessageIds.New()).ToList();
        Assert.Equal(ids.Count, ids.Distinct(StringComparer.Ordinal).Count());
        foreach (var id in ids.Take(100))
        {
            var guid = Guid.ParseExact(id, "N");
            Assert.Equal(7, guid.Version);
            Assert.Equal(32, id.Length);
            Assert.True((Convert.FromHexString(id)[8] & 0xC0) == 0x80, "RFC 9562 variant");
        }
    }

    [Fact]
    public async Task Ids_sort_by_creation_time()
    {
        var earlier = MessageIds.New();
        await Task.Delay(5);
        var later = MessageIds.New();
        Assert.True(string.CompareOrdinal(earlier, later) < 0, $"{earlier} should sort before {later}");
        var sameMillisecond = Enumerable.Range(0, 1000).Select(_ => MessageIds.New()).ToList();
        Assert.Equal(sameMillisecond.Order(StringComparer.Ordinal), sameMillisecond);
    }

    [Fact]
    public void An_id_kept_as_a_number_formats_to_the_same_layout()
    {
        var value = MessageIds.NewValue();
        var text = MessageIds.Format(value);
        Assert.Equal(32, text.Length);
        Assert.Equal(text, text.ToLowerInvariant());
        Assert.Equal(value, UInt128.Parse(text, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(7, Guid.ParseExact(text, "N").Version);
        Assert.True(string.CompareOrdinal(text, MessageIds.New()) < 0, "the text form sorts like the number");
    }

    [Fact]
    public void The_utf8_id_for_transports_matches_the_text_and_leaves_an_assigned_id_unformatted()
    {
        var assigned = new OutgoingMessage(new byte[] { 1, 2, 3 });
        Assert.Empty(Bus.Transport.MessageIdEncoding.GetUtf8(assigned));
        assigned.AssignIdIfMissing();
        var utf8 = Bus.Transport.MessageIdEncoding.GetUtf8(assigned);
        Assert.Null(assigned.MessageIdText); // still a number: publishing does not leave a string on the message
        Assert.Equal(32, utf8.Length);
        Assert.Equal(assigned.MessageId, System.Text.Encoding.UTF8.GetString(utf8));
        Assert.NotSame(utf8, Bus.Transport.MessageIdEncoding.GetUtf8(assigned)); // the caller owns each array

        var chosen = new OutgoingMessage(new byte[] { 1 }) { MessageId = "order-17-ü" };
        Assert.Equal("order-17-ü"u8.ToArray(), Bus.Transport.MessageIdEncoding.GetUtf8(chosen));
    }
}
