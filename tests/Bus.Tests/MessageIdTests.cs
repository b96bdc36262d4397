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
}
