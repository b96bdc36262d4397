using Bus.Sqs.Internal;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bus.Sqs.Tests;

/// <summary>
/// How a batch is cut into SendMessageBatch requests: what a failed request's entries are mapped back to (the chunk's
/// first index) must be right across cuts made by the byte limit, where one message is carried into the next chunk.
/// </summary>
public class LazyChunksTests
{
    private static SqsTransport.Encoded Sized(long wireSize) => new("body", "attribute", wireSize, 0, null, null);

    [Property(MaxTest = 300)]
    public Property Chunks_cover_the_batch_in_order_within_the_limits_and_know_where_they_start()
    {
        var sizes = Gen.Choose(1, SqsEnvelope.WireLimit).Select(size => (long)size)
            .ArrayOf()
            .Select(all => all.Take(60).ToArray()) // up to 60 messages, sizes anywhere from 1 byte to the whole limit
            .ToArbitrary();
        var takers = Gen.Choose(1, 3).ToArbitrary();
        return Prop.ForAll(sizes, takers, (batch, takerCount) =>
        {
            var encoded = 0;
            var chunks = new SqsTransport.LazyChunks(i => { encoded++; return Sized(batch[i]); }, batch.Length, takerCount, CancellationToken.None);
            var seen = new List<List<SqsTransport.Chunk>>();
            for (var taker = 0; taker < takerCount; taker++)
            {
                seen.Add([]);
            }

            // The takers ask in turn, each for each index once, as the group queues' senders do.
            for (var index = 0; ; index++)
            {
                var any = false;
                for (var taker = 0; taker < takerCount; taker++)
                {
                    if (chunks.Take(index) is { } chunk)
                    {
                        seen[taker].Add(chunk);
                        any = true;
                    }
                }

                if (!any)
                {
                    break;
                }
            }

            var cut = seen[0];
            var next = 0;
            foreach (var chunk in cut)
            {
                var size = chunk.Messages.Sum(m => m.WireSize);
                var fits = chunk.Messages.Length is >= 1 and <= SqsTransport.BatchSize
                    && (chunk.Messages.Length == 1 || size <= SqsEnvelope.WireLimit)
                    && chunk.Start == next
                    && chunk.Messages.Select(m => m.WireSize).SequenceEqual(batch.Skip(chunk.Start).Take(chunk.Messages.Length))
                    // full: a chunk short of 10 entries ends the batch or could not take the next message
                    && (chunk.Messages.Length == SqsTransport.BatchSize || next + chunk.Messages.Length == batch.Length || size + batch[next + chunk.Messages.Length] > SqsEnvelope.WireLimit);
                if (!fits)
                {
                    return false;
                }

                next += chunk.Messages.Length;
            }

            return next == batch.Length
                && encoded == batch.Length // each message encoded once, however many takers
                && seen.All(taker => taker.Count == cut.Count && taker.Zip(cut).All(p => p.First.Start == p.Second.Start && p.First.Messages == p.Second.Messages));
        });
    }
}
