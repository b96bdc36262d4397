namespace Bus.Memory;

/// <summary>
/// A published message as the in-memory broker keeps it: a snapshot that does not change while the log or a group
/// holds it (the last to let go clears it), held as a handle to an entry of a <see cref="MessageStore"/> block rather
/// than as objects of its own.
/// </summary>
internal readonly struct StoredMessage(StoredBlock block, int index)
{
    private ref StoredEntry Entry => ref block.Entries[index];

    public long Offset => Entry.Offset;

    public ReadOnlyMemory<byte> Body => Entry.Body;

    public string? Key => Entry.Key;

    public IReadOnlyDictionary<string, string>? Headers => Entry.Headers;

    /// <summary>The id's text, when the publisher set one or had read the assigned one; else null and <see cref="AssignedId"/> holds it.</summary>
    public string? MessageIdText => Entry.MessageId;

    public UInt128 AssignedId => Entry.AssignedId;

    public string? CorrelationId => Entry.CorrelationId;

    public string? ContentType => Entry.ContentType;

    public string? ReplyTo => Entry.ReplyTo;

    public DateTimeOffset Timestamp => new(Entry.UtcTicks, TimeSpan.Zero);

    /// <summary>Gives a delayed message its offset when it becomes due. Under the topic's lock.</summary>
    public void SetOffset(long offset) => Entry.Offset = offset;

    /// <summary>Counts holders: the log, and each group that has the message waiting or in flight. Under the topic's lock.</summary>
    public void Hold(int holders) => Interlocked.Add(ref Entry.Holders, holders);

    /// <summary>
    /// A holder is done with the message (trimmed from the log, or acked by a group; an ack takes no lock). The last one
    /// clears the entry's references, so that a block kept alive by a neighbour (a delayed or unacked message) does not
    /// keep this message's body, key and headers: retention bounds memory as it did when each message was an object.
    /// </summary>
    public void Release()
    {
        ref var entry = ref Entry;
        if (Interlocked.Decrement(ref entry.Holders) == 0)
        {
            entry.Body = default;
            entry.Key = null;
            entry.Headers = null;
            entry.MessageId = null;
            entry.CorrelationId = null;
            entry.ContentType = null;
            entry.ReplyTo = null;
        }
    }
}

/// <summary>One stored message's fields. Written once under the topic's lock, before anyone can see the message.</summary>
internal struct StoredEntry
{
    public ReadOnlyMemory<byte> Body;
    public string? Key;
    public IReadOnlyDictionary<string, string>? Headers;
    public string? MessageId;
    public UInt128 AssignedId;
    public string? CorrelationId;
    public string? ContentType;
    public string? ReplyTo;
    public long Offset;
    public long UtcTicks;
    public int Holders;
}

/// <summary>A block of stored messages: an array of entries, filled in order.</summary>
internal sealed class StoredBlock(int capacity)
{
    public readonly StoredEntry[] Entries = new StoredEntry[capacity];
    public int Count;
}

/// <summary>
/// Where a topic keeps its messages: entries in blocks of up to 512 and bodies copied side by side into shared
/// buffers of up to 64 KiB, so that a retained log of 100,000 messages is a few hundred objects rather than three
/// per message.
/// </summary>
/// <remarks>
/// Why: with three objects per message (the entry, its body and its id text), every retained message was copied by
/// two garbage collections and marked by every full one; with the default retention of 100,000 collection pauses
/// came to about 1 µs per message published, against 0.13 µs with a retention of 1,000. Blocks and buffers grow from
/// small (a topic with a few messages holds a few KiB) and stay under the large-object threshold: large-object
/// allocations count towards full collections, which made every collection a full one when tried. A body over 8 KiB
/// gets an array of its own. A block lives as long as any of its messages is retained, waiting or in flight, but a
/// message that none of them holds any more has its references cleared (<see cref="StoredMessage.Release"/>), so what
/// stays is the block's entries (up to 57 KiB) and the buffers still referred to. The price: a delivered message's body
/// is a slice of a shared buffer, so a message an application keeps keeps its buffer (at most 64 KiB, or its own body
/// over 8 KiB) alive. Every member runs under the topic's lock.
/// </remarks>
internal sealed class MessageStore
{
    private const int MaxBlockCapacity = 512;
    private const int MinBufferSize = 4 * 1024;
    private const int MaxBufferSize = 64 * 1024;
    private const int OwnArrayAbove = 8 * 1024;

    private StoredBlock _block = new(16);
    private byte[] _buffer = [];
    private int _bufferUsed;

    /// <summary>Stores a copy of <paramref name="message"/> (offset not yet assigned).</summary>
    public StoredMessage Add(OutgoingMessage message, long utcTicks)
    {
        if (_block.Count == _block.Entries.Length)
        {
            _block = new StoredBlock(Math.Min(_block.Entries.Length * 2, MaxBlockCapacity));
        }

        var index = _block.Count++;
        ref var entry = ref _block.Entries[index];
        entry.Body = CopyBody(message.Body.Span);
        entry.Key = message.Key;
        entry.Headers = message.HasHeaders ? new Dictionary<string, string>(message.Headers, StringComparer.Ordinal) : null;
        // A stored string per message would be one more object per retained message for the collector to copy.
        entry.MessageId = message.MessageIdText;
        entry.AssignedId = message.AssignedId;
        entry.CorrelationId = message.CorrelationId;
        entry.ContentType = message.ContentType;
        entry.ReplyTo = message.ReplyTo;
        entry.Offset = -1;
        entry.UtcTicks = utcTicks;
        return new StoredMessage(_block, index);
    }

    private ReadOnlyMemory<byte> CopyBody(ReadOnlySpan<byte> body)
    {
        if (body.IsEmpty)
        {
            return ReadOnlyMemory<byte>.Empty;
        }

        if (body.Length > OwnArrayAbove)
        {
            return body.ToArray();
        }

        if (_buffer.Length - _bufferUsed < body.Length)
        {
            // The old buffer stays alive as long as a stored or delivered message refers to it. A body larger than the
            // next size (up to 8 KiB while buffers are still small) sets the size.
            _buffer = GC.AllocateUninitializedArray<byte>(Math.Max(body.Length, Math.Clamp(_buffer.Length * 2, MinBufferSize, MaxBufferSize)));
            _bufferUsed = 0;
        }

        var copy = new Memory<byte>(_buffer, _bufferUsed, body.Length);
        body.CopyTo(copy.Span);
        _bufferUsed += body.Length;
        return copy;
    }
}

/// <summary>A message waiting in (or handed out by) one group, with that group's delivery count.</summary>
internal struct Pending(StoredMessage message)
{
    public readonly StoredMessage Message = message;
    public int Deliveries;
}
