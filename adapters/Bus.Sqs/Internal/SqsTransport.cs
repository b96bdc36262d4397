using System.Collections.Concurrent;
using System.Globalization;
using Amazon.Runtime;
using Amazon.SQS;
using Amazon.SQS.Model;
using Bus.Transport;
using Microsoft.Extensions.Logging;

namespace Bus.Sqs.Internal;

/// <summary>
/// The SQS transport: a group is a queue <c>&lt;topic&gt;_&lt;group&gt;</c>; publishing sends to every group queue of
/// the topic (see <see cref="GroupDirectory"/>); a topic named <c>*.fifo</c> uses FIFO queues.
/// </summary>
internal sealed partial class SqsTransport : MessageTransport
{
    private readonly ConcurrentDictionary<string, Task<QueueInfo>> _queues = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, byte> _deadLetterTopics = new(StringComparer.Ordinal);
    private readonly bool _ownsClient;

    public SqsTransport(SqsSettings settings, IAmazonSQS client, bool ownsClient, ILoggerFactory loggerFactory)
    {
        Settings = settings;
        Client = client;
        _ownsClient = ownsClient;
        LoggerFactory = loggerFactory;
        Logger = loggerFactory.CreateLogger("Bus.Sqs");
        Groups = new GroupDirectory(client, settings.GroupCacheTime, settings.FifoAll, Logger);
        CloseWaits = new CloseWaits(settings.CloseWait, TimeSpan.FromMilliseconds(500));
    }

    public override BackendCapabilities Capabilities => Settings.FifoAll ? SqsFifoTransportFactory.DeclaredCapabilities : SqsTransportFactory.DeclaredCapabilities;

    internal bool IsFifo(string topic) => SqsNames.IsFifo(topic, Settings.FifoAll);

    internal SqsSettings Settings { get; }

    internal IAmazonSQS Client { get; }

    internal ILogger Logger { get; }

    internal ILoggerFactory LoggerFactory { get; }

    internal GroupDirectory Groups { get; }

    /// <summary>
    /// How long a step of closing a consumer waits for the server: <see cref="SqsSettings.CloseWait"/>, and 0.5 s once
    /// one went unanswered (enough for a server that answers again; a bus with a subscription and a pull consumer took
    /// 14 s to dispose against a frozen fauxqs with a full wait for each step), until a receive is answered.
    /// </summary>
    internal CloseWaits CloseWaits { get; }

    /// <summary>How long a process that created a group queue waits before the group counts as established.</summary>
    internal TimeSpan EstablishDelay => Settings.GroupCacheTime <= TimeSpan.Zero ? TimeSpan.Zero : Settings.GroupCacheTime + TimeSpan.FromMilliseconds(200);

    public static AmazonSQSClient CreateClient(SqsSettings settings)
    {
        var config = new AmazonSQSConfig
        {
            MaxErrorRetry = settings.MaxRetries,
            Timeout = settings.RequestTimeout,
        };
        if (settings.Endpoint is { } endpoint)
        {
            config.ServiceURL = endpoint.ToString();
            config.AuthenticationRegion = settings.Region;
        }
        else
        {
            config.RegionEndpoint = Amazon.RegionEndpoint.GetBySystemName(settings.Region);
        }

        if (settings.AccessKey is { } access)
        {
            AWSCredentials credentials = settings.SessionToken is { } token
                ? new SessionAWSCredentials(access, settings.SecretKey, token)
                : new BasicAWSCredentials(access, settings.SecretKey);
            return new AmazonSQSClient(credentials, config);
        }

        // The standard chain: environment, profile, web identity, container and instance credentials.
        return new AmazonSQSClient(config);
    }

    public override async ValueTask ConnectAsync(CancellationToken cancellationToken)
    {
        try
        {
            await Client.ListQueuesAsync(new ListQueuesRequest { MaxResults = 1, QueueNamePrefix = "bus-connect-check" }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            var error = SqsErrors.Wrap(ex, $"connecting to {Settings.Describe()}", null);
            throw new BusException(error.Message, error.Reason == BusFailureReason.Unauthorized ? BusFailureReason.Unauthorized : BusFailureReason.Connection, SqsTransportFactory.BackendName, null, error.IsTransient, ex);
        }

        Log.Connected(Logger, Settings.Describe());
    }

    public override string? ValidateTopicName(string topic) => SqsNames.ValidateTopic(topic);

    public override string GetDeadLetterTopic(string topic) => SqsNames.DeadLetterTopic(topic);

    /// <summary>
    /// The wire size (body after encoding plus the <c>bus</c> attribute) expressed against the declared body limit: it
    /// exceeds <see cref="BackendCapabilities.MaxMessageSize"/> exactly when the SQS message would exceed 262,144 bytes.
    /// </summary>
    public override long MeasureMessage(OutgoingMessage message)
        => SqsEnvelope.WireSize(message) - SqsEnvelope.WireLimit + SqsEnvelope.MaxBodySize;

    /// <summary>The body travels as base64 and non-ASCII text in the attribute as \uXXXX: core's quick bound does not hold.</summary>
    public override bool EncodingCanExceedQuickBound => true;

    public override async ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        var fifo = IsFifo(topic.Name);
        if (topic.Options.Ordered is { } ordered && ordered != fifo)
        {
            throw new BusException(
                ordered
                    ? $"sqs: topic '{topic.Name}' cannot be ordered: SQS FIFO topics are named '<name>.fifo' (the name is how every bus knows the queues are FIFO); use '{topic.Name}.fifo'."
                    : $"sqs: topic '{topic.Name}' is a FIFO topic (its name ends in '.fifo') and cannot be unordered.",
                BusFailureReason.TopicConflict, SqsTransportFactory.BackendName, topic.Name);
        }

        if (topic.IsDeadLetterTopic)
        {
            _deadLetterTopics.TryAdd(topic.Name, 0);
        }

        foreach (var group in topic.DurableGroups)
        {
            await EnsureGroupQueueAsync(topic.Name, group, null, topic.IsDeadLetterTopic, cancellationToken).ConfigureAwait(false);
        }
    }

    public override async ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
    {
        if (SqsNames.ValidateGroup(options.Group) is { } problem)
        {
            throw new BusConfigurationException($"sqs: group '{options.Group}' of topic '{topic}': {problem}.", SqsTransportFactory.BackendName);
        }

        var isDeadLetterTopic = _deadLetterTopics.ContainsKey(topic) || SqsNames.Stem(topic).EndsWith("-dlq", StringComparison.Ordinal);
        string? redrivePolicy = null;
        if (!isDeadLetterTopic)
        {
            var deadLetterTopic = options.DeadLetterTopic ?? GetDeadLetterTopic(topic);
            if (IsFifo(deadLetterTopic) == IsFifo(topic))
            {
                var deadLetterUrl = await EnsureGroupQueueAsync(deadLetterTopic, BusDefaults.DeadLetterGroup, null, true, cancellationToken).ConfigureAwait(false);
                var arn = await GetArnAsync(deadLetterUrl, cancellationToken).ConfigureAwait(false);

                // The safety net stays above core's limit, so that core dead-letters first (with the reason headers).
                var maxReceiveCount = Math.Max(Settings.MaxReceiveCount, options.MaxDeliveries + 1);
                redrivePolicy = string.Create(CultureInfo.InvariantCulture, $"{{\"deadLetterTargetArn\":\"{arn}\",\"maxReceiveCount\":{maxReceiveCount}}}");
            }
            else
            {
                Log.RedriveKindMismatch(Logger, SqsNames.QueueName(topic, options.Group, Settings.FifoAll), SqsNames.QueueName(deadLetterTopic, BusDefaults.DeadLetterGroup, Settings.FifoAll));
            }
        }

        var url = await EnsureGroupQueueAsync(topic, options.Group, redrivePolicy, isDeadLetterTopic, cancellationToken).ConfigureAwait(false);

        return new SqsReceiver(this, topic, url, options);
    }

    /// <summary>
    /// The URL of a group's queue, creating it if missing. When this process created it, waits until
    /// <see cref="EstablishDelay"/> has passed since, so that every publisher (in any process) lists it by then.
    /// </summary>
    internal async Task<string> EnsureGroupQueueAsync(string topic, string group, string? redrivePolicy, bool deadLetter, CancellationToken cancellationToken)
    {
        var name = SqsNames.QueueName(topic, group, Settings.FifoAll);
        if (name.Length > SqsNames.MaxQueueNameLength)
        {
            throw new BusConfigurationException($"sqs: group '{group}' of topic '{topic}' makes the queue name '{name}' {name.Length} characters long; SQS allows {SqsNames.MaxQueueNameLength}. Use a shorter group name.", SqsTransportFactory.BackendName);
        }

        var lookup = _queues.GetOrAdd(name, static (n, state) => state.Self.GetOrCreateQueueAsync(n, state.Topic, state.Group, state.Redrive, state.DeadLetter), (Self: this, Topic: topic, Group: group, Redrive: redrivePolicy, DeadLetter: deadLetter));
        QueueInfo queue;
        try
        {
            queue = await lookup.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch when (lookup.IsFaulted || lookup.IsCanceled)
        {
            _queues.TryRemove(new KeyValuePair<string, Task<QueueInfo>>(name, lookup));
            throw;
        }

        Groups.Add(topic, queue.Url);
        var wait = System.Diagnostics.Stopwatch.GetElapsedTime(queue.CreatedAt);
        if (queue.CreatedAt != 0 && wait < EstablishDelay)
        {
            await Task.Delay(EstablishDelay - wait, cancellationToken).ConfigureAwait(false);
        }

        return queue.Url;
    }

    /// <summary>
    /// Deletes the group queues of the topic (SQS has no topic of its own: a topic is its group queues). A queue that
    /// does not exist is skipped. SQS takes up to 60 seconds to forget a deleted queue's name, so a topic of the same
    /// name is not recreated at once (core's private reply topics and the conformance suite's topics never reuse names).
    /// </summary>
    public override async ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        foreach (var group in topic.DurableGroups)
        {
            var name = SqsNames.QueueName(topic.Name, group, Settings.FifoAll);
            string url;
            try
            {
                url = (await Client.GetQueueUrlAsync(new GetQueueUrlRequest { QueueName = name }, cancellationToken).ConfigureAwait(false)).QueueUrl;
            }
            catch (QueueDoesNotExistException)
            {
                continue;
            }

            try
            {
                await Client.DeleteQueueAsync(new DeleteQueueRequest { QueueUrl = url }, cancellationToken).ConfigureAwait(false);
            }
            catch (QueueDoesNotExistException)
            {
            }

            Groups.Remove(topic.Name, url);
            _queues.TryRemove(name, out _);
        }
    }

    private async Task<QueueInfo> GetOrCreateQueueAsync(string name, string topic, string group, string? redrivePolicy, bool deadLetter)
    {
        try
        {
            var existing = await Client.GetQueueUrlAsync(new GetQueueUrlRequest { QueueName = name }, CancellationToken.None).ConfigureAwait(false);
            return new QueueInfo(existing.QueueUrl, 0);
        }
        catch (QueueDoesNotExistException)
        {
        }

        var attributes = new Dictionary<string, string>(StringComparer.Ordinal);
        if (SqsNames.IsFifo(name))
        {
            attributes["FifoQueue"] = "true";
        }

        if (redrivePolicy is not null)
        {
            attributes["RedrivePolicy"] = redrivePolicy;
        }

        if (deadLetter)
        {
            // Dead letters are kept as long as SQS allows: 14 days.
            attributes["MessageRetentionPeriod"] = "1209600";
        }

        try
        {
            var response = await Client.CreateQueueAsync(new CreateQueueRequest { QueueName = name, Attributes = attributes }, CancellationToken.None).ConfigureAwait(false);
            Log.QueueCreated(Logger, name, topic, group, (long)EstablishDelay.TotalMilliseconds);
            return new QueueInfo(response.QueueUrl, System.Diagnostics.Stopwatch.GetTimestamp());
        }
        catch (QueueNameExistsException)
        {
            // Created meanwhile by another bus with other attributes: use it as it is.
            var existing = await Client.GetQueueUrlAsync(new GetQueueUrlRequest { QueueName = name }, CancellationToken.None).ConfigureAwait(false);
            return new QueueInfo(existing.QueueUrl, 0);
        }
    }

    private readonly record struct QueueInfo(string Url, long CreatedAt);

    private async Task<string> GetArnAsync(string queueUrl, CancellationToken cancellationToken)
    {
        var response = await Client.GetQueueAttributesAsync(new GetQueueAttributesRequest { QueueUrl = queueUrl, AttributeNames = ["QueueArn"] }, cancellationToken).ConfigureAwait(false);
        return response.Attributes is { } attributes && attributes.TryGetValue("QueueArn", out var arn)
            ? arn
            : throw new BusException($"sqs: queue {SqsNames.NameFromUrl(queueUrl)} has no ARN", BusFailureReason.BrokerError, SqsTransportFactory.BackendName);
    }

    private readonly ConcurrentDictionary<string, int> _unseenReleases = new(StringComparer.Ordinal);

    /// <summary>
    /// Records that a received message (by SQS message id) was released without being handed to the application
    /// (buffered at dispose, or held behind a nacked message of its FIFO group), so that its next delivery count does
    /// not include that receive. Best effort: only this process knows; entries go when the message is acked here.
    /// </summary>
    internal void NoteUnseen(string sqsMessageId) => _unseenReleases.AddOrUpdate(sqsMessageId, 1, static (_, n) => n + 1);

    internal int UnseenReleases(string sqsMessageId) => _unseenReleases.TryGetValue(sqsMessageId, out var n) ? n : 0;

    internal void ForgetUnseen(string sqsMessageId) => _unseenReleases.TryRemove(sqsMessageId, out _);

    /// <summary>Forgets a queue that was deleted behind our back.</summary>
    internal void ForgetQueue(string topic, string queueUrl)
    {
        Groups.Remove(topic, queueUrl);
        _queues.TryRemove(SqsNames.NameFromUrl(queueUrl), out _);
        Log.GroupQueueGone(Logger, SqsNames.NameFromUrl(queueUrl), topic);
    }

    public override ValueTask DisposeAsync()
    {
        if (_ownsClient)
        {
            Client.Dispose();
        }

        return base.DisposeAsync();
    }
}
