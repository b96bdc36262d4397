using Xunit;

namespace Bus.Tests;

/// <summary>Runs alone (no other test allocating meanwhile): it measures the process's live memory.</summary>
[CollectionDefinition(nameof(MemoryMeasurement), DisableParallelization = true)]
public class MemoryMeasurement;

/// <summary>What the in-memory backend keeps alive.</summary>
[Collection(nameof(MemoryMeasurement))]
public class MemoryRetentionTests
{
    private static async Task<ReceivedMessage> ReceiveAsync(MessageConsumer consumer)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        return await consumer.ReceiveAsync(timeout.Token);
    }

    [Fact]
    public async Task Retention_bounds_memory_while_a_neighbour_in_the_same_block_is_still_held()
    {
        // Messages are stored in shared blocks; a delayed message and an unacked one keep their block alive, but the
        // trimmed and acked messages beside them must not keep their bodies (207-303 MiB here without that, under 64 MiB with it).
        var before = GC.GetTotalMemory(forceFullCollection: true);
        await using (var bus = MessageBus.Create("memory://?retention=10"))
        {
            await using var consumer = await bus.CreateConsumerAsync("big", new SubscriptionOptions { Group = "g", MaxInFlight = 1, PerKeyOrdering = false });
            await bus.PublishAsync("big", new OutgoingMessage(new byte[1 << 20]) { Delay = TimeSpan.FromHours(1) });
            for (var i = 0; i < 300; i++)
            {
                await bus.PublishAsync("big", new OutgoingMessage(new byte[1 << 20]));
            }

            var held = await ReceiveAsync(consumer); // the first, kept unacked; the rest go to a second consumer
            Assert.Equal(1 << 20, held.Body.Length);
            await using var other = await bus.CreateConsumerAsync("big", new SubscriptionOptions { Group = "g", MaxInFlight = 64, PerKeyOrdering = false });
            for (var i = 1; i < 300; i++)
            {
                await (await ReceiveAsync(other)).AckAsync();
            }

            var growth = GC.GetTotalMemory(forceFullCollection: true) - before;
            Assert.True(growth < 64L << 20, $"{growth >> 20} MiB still referenced with retention 10, one delayed and one unacked 1 MiB message");
            GC.KeepAlive(held);
        }
    }
}
