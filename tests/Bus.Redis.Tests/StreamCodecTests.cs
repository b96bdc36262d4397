using Bus.Redis.Internal;
using StackExchange.Redis;
using Xunit;

namespace Bus.Redis.Tests;

/// <summary>The entry id's time, read from the bytes StackExchange.Redis hands over (no broker needed).</summary>
public class StreamCodecTests
{
    [Theory]
    [InlineData("1700000000123-0", 1700000000123L)]
    [InlineData("1700000000123-18446744073709551615", 1700000000123L)]
    [InlineData("1700000000123", 1700000000123L)] // no sequence part
    [InlineData("0-1", 0L)]
    [InlineData("99999999999999999-0", 253402300799999L)] // past 9999-12-31: the latest time there is
    [InlineData("18446744073709551615-0", 253402300799999L)] // Redis's largest, above long.MaxValue
    public void The_timestamp_is_the_millisecond_part_of_the_entry_id(string entryId, long expectedMs)
    {
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(expectedMs), StreamCodec.TimestampOf(entryId));
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(expectedMs), StreamCodec.TimestampOf(System.Text.Encoding.ASCII.GetBytes(entryId)));
    }

    [Theory]
    [InlineData("")]
    [InlineData("-5")]
    [InlineData("+5-0")]
    [InlineData("abc-0")]
    [InlineData("12x-0")]
    [InlineData("12-x")] // not an id, though its first part would be a time
    [InlineData("184467440737095516150-0")] // beyond 64 bits
    public void An_id_without_a_readable_time_gives_the_epoch(string entryId)
        => Assert.Equal(DateTimeOffset.UnixEpoch, StreamCodec.TimestampOf(entryId));

    [Fact]
    public void A_null_or_overlong_id_gives_the_epoch()
    {
        Assert.Equal(DateTimeOffset.UnixEpoch, StreamCodec.TimestampOf(RedisValue.Null));
        Assert.Equal(DateTimeOffset.UnixEpoch, StreamCodec.TimestampOf(new string('1', 49) + "-0"));
    }
}
