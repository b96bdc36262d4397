namespace Bus.Sqs.Internal;

/// <summary>
/// How topics and groups map onto SQS queue names. A group is the queue <c>&lt;topic&gt;_&lt;group&gt;</c>
/// (before a FIFO topic's <c>.fifo</c> suffix). Topic names may not contain '_', so the first '_' always separates
/// topic from group and the prefix <c>&lt;topic&gt;_</c> lists exactly the topic's groups.
/// </summary>
internal static class SqsNames
{
    /// <summary>SQS's limit for a queue name, suffix included.</summary>
    public const int MaxQueueNameLength = 80;

    /// <summary>
    /// The longest topic name, <c>.fifo</c> included: leaves room for the dead-letter suffix (<c>-dlq</c>), the
    /// separator and a group name of at least 30 characters.
    /// </summary>
    public const int MaxTopicNameLength = 40;

    public const string FifoSuffix = ".fifo";

    public const char Separator = '_';

    public static bool IsFifo(string topic) => topic.EndsWith(FifoSuffix, StringComparison.Ordinal);

    /// <summary>Whether <paramref name="topic"/> uses FIFO queues: named so, or every topic does (<c>sqs-fifo://</c>).</summary>
    public static bool IsFifo(string topic, bool fifoAll) => fifoAll || IsFifo(topic);

    /// <summary>The topic without its <c>.fifo</c> suffix.</summary>
    public static string Stem(string topic) => IsFifo(topic) ? topic[..^FifoSuffix.Length] : topic;

    public static string? ValidateTopic(string topic)
    {
        var stem = Stem(topic);
        if (stem.Length == 0)
        {
            return "the name before '.fifo' is empty";
        }

        foreach (var c in stem)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c == '-'))
            {
                var shown = char.IsControl(c) || char.IsWhiteSpace(c) ? $"\\u{(int)c:x4}" : c.ToString();
                return $"character '{shown}' is not allowed (SQS topics use letters, digits and '-', optionally ending in '.fifo' for a FIFO topic; '_' separates topic and group in queue names)";
            }
        }

        return null;
    }

    public static string? ValidateGroup(string group)
    {
        foreach (var c in group)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_'))
            {
                return $"character '{c}' is not allowed in an SQS group name (letters, digits, '-' and '_')";
            }
        }

        return null;
    }

    /// <summary>The dead-letter topic: <c>&lt;topic&gt;-dlq</c>, keeping a FIFO topic's suffix (a FIFO queue needs a FIFO dead-letter queue).</summary>
    public static string DeadLetterTopic(string topic) => IsFifo(topic) ? Stem(topic) + "-dlq" + FifoSuffix : topic + "-dlq";

    public static string QueueName(string topic, string group, bool fifoAll) => Stem(topic) + Separator + group + (IsFifo(topic, fifoAll) ? FifoSuffix : "");

    /// <summary>The prefix every group queue of <paramref name="topic"/> starts with.</summary>
    public static string GroupPrefix(string topic) => Stem(topic) + Separator;

    public static string QueueName(string topic, string group) => Stem(topic) + Separator + group + (IsFifo(topic) ? FifoSuffix : "");

    /// <summary>The group of a queue listed under <see cref="GroupPrefix"/>, or <see langword="null"/> if the queue belongs to the other kind of topic (standard vs FIFO).</summary>
    public static string? GroupOf(string topic, string queueName, bool fifoAll = false)
    {
        var prefix = GroupPrefix(topic);
        var fifo = IsFifo(topic, fifoAll);
        if (!queueName.StartsWith(prefix, StringComparison.Ordinal) || IsFifo(queueName) != fifo)
        {
            return null;
        }

        var group = queueName[prefix.Length..];
        return fifo ? group[..^FifoSuffix.Length] : group;
    }

    /// <summary>The queue name from a queue URL (its last path segment).</summary>
    public static string NameFromUrl(string queueUrl)
    {
        var slash = queueUrl.LastIndexOf('/');
        return slash < 0 ? queueUrl : queueUrl[(slash + 1)..];
    }

    /// <summary>
    /// A MessageGroupId or MessageDeduplicationId for <paramref name="value"/>: itself when SQS accepts it (1–128
    /// printable ASCII characters), else a SHA-256 of it (so one key still maps to one message group).
    /// </summary>
    public static string FifoId(string value)
    {
        if (value.Length is > 0 and <= 128 && value.All(c => c is > ' ' and <= '~'))
        {
            return value;
        }

        return "h-" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(value)));
    }
}
