namespace Bus.Kafka.Tests;

/// <summary>Kafka's Java client partitioner (org.apache.kafka.common.utils.Utils.murmur2), for checking placement.</summary>
internal static class Murmur2
{
    public static int Hash(byte[] data)
    {
        unchecked
        {
            const int m = 0x5bd1e995;
            const int r = 24;
            var length = data.Length;
            var h = (int)0x9747b28c ^ length;
            for (var i = 0; i < length / 4; i++)
            {
                var i4 = i * 4;
                var k = (data[i4] & 0xff) + ((data[i4 + 1] & 0xff) << 8) + ((data[i4 + 2] & 0xff) << 16) + ((data[i4 + 3] & 0xff) << 24);
                k *= m;
                k ^= (int)((uint)k >> r);
                k *= m;
                h *= m;
                h ^= k;
            }

            var tail = length & ~3;
            switch (length % 4)
            {
                case 3:
                    h ^= (data[tail + 2] & 0xff) << 16;
                    goto case 2;
                case 2:
                    h ^= (data[tail + 1] & 0xff) << 8;
                    goto case 1;
                case 1:
                    h ^= data[tail] & 0xff;
                    h *= m;
                    break;
            }

            h ^= (int)((uint)h >> 13);
            h *= m;
            h ^= (int)((uint)h >> 15);
            return h;
        }
    }

    /// <summary>The partition Java's default partitioner picks for a keyed record.</summary>
    public static int Partition(byte[] key, int partitions) => (Hash(key) & 0x7fffffff) % partitions;
}
