using System.Collections.Concurrent;
using System.Diagnostics;
using Amazon.SQS;
using Amazon.SQS.Model;
using Microsoft.Extensions.Logging;

namespace Bus.Sqs.Internal;

/// <summary>
/// Which group queues a topic has, for fan-out on publish. SQS has no topics: a publisher lists the queues named
/// <c>&lt;topic&gt;_*</c> (ListQueues with that prefix) and trusts the list for <see cref="SqsSettings.GroupCacheTime"/>.
/// Queues this process creates or opens are added at once. A process that creates a new group queue waits longer
/// than that time before its receiver counts as established, so that every publisher (in any process) has listed
/// again by then and sends to the new group too.
/// </summary>
internal sealed class GroupDirectory(IAmazonSQS client, TimeSpan cacheTime, bool fifoAll, ILogger logger)
{
    private readonly ConcurrentDictionary<string, Entry> _entries = new(StringComparer.Ordinal);
    private readonly long _cacheTicks = (long)(cacheTime.TotalSeconds * Stopwatch.Frequency);

    /// <summary>The group queue URLs of <paramref name="topic"/>, listing them again when the cached list is too old.</summary>
    public Task<string[]> GetQueuesAsync(string topic, CancellationToken cancellationToken)
    {
        var entry = _entries.GetOrAdd(topic, static _ => new Entry());
        Task<string[]> pending;
        lock (entry)
        {
            var now = Stopwatch.GetTimestamp();
            if (now < entry.ValidUntil)
            {
                return Task.FromResult(entry.Urls);
            }

            // Join a listing in progress only if it started recently enough to see every established group.
            if (entry.Pending is null || entry.PendingStarted + _cacheTicks <= now)
            {
                entry.PendingStarted = now;
                entry.Pending = RefreshAsync(topic, entry, now);
            }

            pending = entry.Pending;
        }

        return pending.IsCompleted ? pending : pending.WaitAsync(cancellationToken);
    }

    /// <summary>Records a group queue this process created or opened: publishes from this process reach it at once.</summary>
    public void Add(string topic, string queueUrl)
    {
        var entry = _entries.GetOrAdd(topic, static _ => new Entry());
        lock (entry)
        {
            var name = SqsNames.NameFromUrl(queueUrl);
            if (entry.Known.Add(queueUrl) && !entry.Urls.Any(url => SqsNames.NameFromUrl(url) == name))
            {
                entry.Urls = [.. entry.Urls, queueUrl];
            }
        }
    }

    /// <summary>Forgets a queue that no longer exists.</summary>
    public void Remove(string topic, string queueUrl)
    {
        if (_entries.TryGetValue(topic, out var entry))
        {
            lock (entry)
            {
                entry.Known.Remove(queueUrl);
                entry.Urls = entry.Urls.Where(url => url != queueUrl).ToArray();
            }
        }
    }

    private async Task<string[]> RefreshAsync(string topic, Entry entry, long started)
    {
        try
        {
            var listed = await ListAsync(topic).ConfigureAwait(false);
            lock (entry)
            {
                if (started < entry.AppliedStarted)
                {
                    // A listing that started later has been applied meanwhile (this one outlived the cache time): it may
                    // know of a group established since this one started, which this list would drop until it expired.
                    if (entry.PendingStarted == started)
                    {
                        entry.Pending = null;
                    }

                    return entry.Urls;
                }

                var names = listed.Select(SqsNames.NameFromUrl).ToHashSet(StringComparer.Ordinal);
                var merged = listed.Concat(entry.Known.Where(url => !names.Contains(SqsNames.NameFromUrl(url)))).ToArray();
                entry.Urls = merged;
                entry.AppliedStarted = started;
                entry.ValidUntil = Math.Max(entry.ValidUntil, started + _cacheTicks);
                if (entry.PendingStarted == started)
                {
                    entry.Pending = null;
                }

                Log.GroupsListed(logger, topic, merged.Length);
                return merged;
            }
        }
        catch
        {
            lock (entry)
            {
                if (entry.PendingStarted == started)
                {
                    entry.Pending = null;
                }
            }

            throw;
        }
    }

    private async Task<List<string>> ListAsync(string topic)
    {
        var urls = new List<string>();
        string? next = null;
        do
        {
            // Not cancellable: a listing is shared by every publish waiting for it (each waits with its own token).
            var response = await client.ListQueuesAsync(new ListQueuesRequest { QueueNamePrefix = SqsNames.GroupPrefix(topic), MaxResults = 1000, NextToken = next }, CancellationToken.None).ConfigureAwait(false);
            foreach (var url in response.QueueUrls ?? [])
            {
                if (SqsNames.GroupOf(topic, SqsNames.NameFromUrl(url), fifoAll) is not null)
                {
                    urls.Add(url);
                }
            }

            next = response.NextToken;
        }
        while (!string.IsNullOrEmpty(next));
        return urls;
    }

    private sealed class Entry
    {
        public string[] Urls = [];
        public long ValidUntil;
        public long PendingStarted;
        public long AppliedStarted; // when the listing now in Urls started
        public Task<string[]>? Pending;
        public readonly HashSet<string> Known = new(StringComparer.Ordinal);
    }
}
