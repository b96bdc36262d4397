namespace Bus.Redis.Internal;

/// <summary>
/// Lua scripts for the steps that must be atomic on the server. Each touches one stream key (plus the dead-letter
/// stream for <see cref="DeadLetter"/>), so in a Redis Cluster both streams must hash to one slot.
/// </summary>
internal static class RedisScripts
{
    /// <summary>
    /// Takes pending entries for delivery to this consumer: XCLAIM (which counts a delivery) and the resulting delivery
    /// count from the pending entries list. KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3..] ids.
    /// Returns { {id, {field, value, ...}, count}, ... }; entries deleted meanwhile are skipped.
    /// </summary>
    public const string Take = """
        local out = {}
        for i = 3, #ARGV do
          local claimed = redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i])
          local entry = claimed[1]
          if entry and entry[2] then
            local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
            local count = 1
            if pending[1] then count = pending[1][4] end
            out[#out + 1] = { entry[1], entry[2], count }
          end
        end
        return out
        """;

    /// <summary>
    /// Nack: if this consumer still owns the entry, sets its idle time so that it becomes claimable (by XAUTOCLAIM
    /// with the group's ack timeout) after the requested delay; JUSTID leaves the delivery count alone (the next
    /// claim counts). KEYS[1] stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] id, ARGV[4] idle ms. Returns 1 or 0.
    /// </summary>
    public const string Nack = """
        local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
        if #pending == 0 then return 0 end
        redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[4], 'JUSTID')
        return 1
        """;

    /// <summary>
    /// Release on close: every entry still owned by this consumer among ARGV[3..] gets a delivery time of 1 ms after
    /// the epoch, so any consumer's next XAUTOCLAIM takes it at once, whatever its ack timeout; then the consumer is
    /// removed from the group if it owns nothing. KEYS[1] stream; ARGV[1] group, ARGV[2] consumer. Returns the number released.
    /// </summary>
    public const string Release = """
        local released = 0
        for i = 3, #ARGV do
          local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
          if #pending > 0 then
            redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'TIME', 1, 'JUSTID')
            released = released + 1
          end
        end
        local left = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
        if #left == 0 then redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2]) end
        return released
        """;

    /// <summary>
    /// Dead-letters atomically: XACK on the source and XADD of the copy to the dead-letter stream, both or neither; a
    /// copy is only written if this consumer still owns the entry (another one may have claimed it after the ack
    /// timeout and be handling it: its delivery decides) and the ack removed it, so a message is dead-lettered at most
    /// once per group. KEYS[1] source stream, KEYS[2] dead-letter stream; ARGV[1] group, ARGV[2] consumer, ARGV[3] id,
    /// ARGV[4] n trim arguments, ARGV[5..4+n] the trim arguments, then the field/value pairs. Returns the new entry id,
    /// or false.
    /// </summary>
    public const string DeadLetter = """
        local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1, ARGV[2])
        if #pending == 0 then return false end
        local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
        if acked == 0 then return false end
        local n = tonumber(ARGV[4])
        local args = { 'XADD', KEYS[2] }
        for i = 5, 4 + n do args[#args + 1] = ARGV[i] end
        args[#args + 1] = '*'
        for i = 5 + n, #ARGV do args[#args + 1] = ARGV[i] end
        return redis.call(unpack(args))
        """;

    /// <summary>
    /// Delayed publish: stores the entry's fields (packed with MessagePack) in the topic's delay set, scored by the
    /// server's clock plus the delay. KEYS[1] delay set; ARGV[1] delay ms, ARGV[2] a nonce (keeps members unique),
    /// ARGV[3..] the field/value pairs. Returns the due time (server ms).
    /// </summary>
    public const string PublishDelayed = """
        local t = redis.call('TIME')
        local due = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
        local packed = {}
        for i = 2, #ARGV do packed[#packed + 1] = ARGV[i] end
        redis.call('ZADD', KEYS[1], due, cmsgpack.pack(packed))
        return due
        """;

    /// <summary>
    /// Moves due entries from the delay set into the stream, each XADD and ZREM in this one script, so an entry is in
    /// exactly one of the two. KEYS[1] stream, KEYS[2] delay set; ARGV[1] the most to move, ARGV[2] n trim arguments,
    /// ARGV[3..2+n] the trim arguments. Returns { moved, server now ms, next due ms or false }.
    /// </summary>
    public const string MoveDue = """
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
        local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
        local n = tonumber(ARGV[2])
        for _, member in ipairs(due) do
          local fields = cmsgpack.unpack(member)
          local args = { 'XADD', KEYS[1] }
          for i = 3, 2 + n do args[#args + 1] = ARGV[i] end
          args[#args + 1] = '*'
          for i = 2, #fields do args[#args + 1] = fields[i] end
          redis.call(unpack(args))
          redis.call('ZREM', KEYS[2], member)
        end
        local nextDue = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
        return { #due, now, nextDue[2] or false }
        """;
}
