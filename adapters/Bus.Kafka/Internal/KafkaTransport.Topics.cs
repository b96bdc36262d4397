using System.Globalization;
using Bus.Transport;
using Confluent.Kafka;
using Confluent.Kafka.Admin;

namespace Bus.Kafka.Internal;

internal sealed partial class KafkaTransport
{
    /// <summary>
    /// Creates the topic with CreateTopics (partitions, retention and properties as topic configs). Where the cluster
    /// does not answer CreateTopics in time (the librdkafka mock cluster, for one), the topic is auto-created by a
    /// metadata request instead, with the broker's default partition count, and the log says so. An existing topic
    /// whose partition count differs from the requested one is a <see cref="BusFailureReason.TopicConflict"/> wherever
    /// the partition count could have been chosen. Durable groups need nothing on the broker: Kafka keeps messages
    /// regardless of groups, and a durable group without committed offsets starts at the earliest message.
    /// </summary>
    public override async ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        var admin = Admin;
        foreach (var group in topic.DurableGroups)
        {
            _durableGroups.TryAdd((topic.Name, group), 0);
        }

        var options = topic.Options;
        var canChoose = !CreateTopicsUnavailable.ContainsKey(_endpoint.BootstrapServers);
        var existed = false;
        if (canChoose)
        {
            var specification = new TopicSpecification
            {
                Name = topic.Name,
                NumPartitions = options.Partitions ?? -1,
                ReplicationFactor = -1,
                Configs = TopicConfigs(options),
            };
            var timeout = TimeSpan.FromMilliseconds(_endpoint.CreateTopicsTimeoutMs);
            try
            {
                await admin.CreateTopicsAsync([specification], new CreateTopicsOptions { RequestTimeout = timeout, OperationTimeout = timeout })
                    .WaitAsync(cancellationToken).ConfigureAwait(false);
                Log.TopicCreated(_logger, topic.Name, options.Partitions ?? -1);
            }
            catch (CreateTopicsException ex) when (ex.Results.Count == 1 && ex.Results[0].Error.Code == ErrorCode.TopicAlreadyExists)
            {
                existed = true;
            }
            catch (CreateTopicsException ex) when (ex.Results.Count == 1 && ex.Results[0].Error.Code is ErrorCode.Local_TimedOut or ErrorCode.RequestTimedOut or ErrorCode.UnsupportedVersion or ErrorCode.Local_UnsupportedFeature)
            {
                CreateTopicsUnavailable.TryAdd(_endpoint.BootstrapServers, true);
                Log.CreateTopicsUnavailable(_logger, topic.Name, _endpoint.CreateTopicsTimeoutMs, ex.Results[0].Error.Reason);
                canChoose = false;
            }
            catch (KafkaException ex) when (ex.Error.Code is ErrorCode.Local_TimedOut or ErrorCode.RequestTimedOut or ErrorCode.UnsupportedVersion or ErrorCode.Local_UnsupportedFeature)
            {
                CreateTopicsUnavailable.TryAdd(_endpoint.BootstrapServers, true);
                Log.CreateTopicsUnavailable(_logger, topic.Name, _endpoint.CreateTopicsTimeoutMs, ex.Error.Reason);
                canChoose = false;
            }
            catch (CreateTopicsException ex) when (ex.Results.Count == 1)
            {
                var error = ex.Results[0].Error;
                var reason = error.Code switch
                {
                    ErrorCode.TopicException => BusFailureReason.InvalidTopic,
                    ErrorCode.TopicAuthorizationFailed or ErrorCode.ClusterAuthorizationFailed => BusFailureReason.Unauthorized,
                    ErrorCode.InvalidPartitions or ErrorCode.InvalidReplicationFactor or ErrorCode.InvalidConfig => BusFailureReason.Configuration,
                    _ => BusFailureReason.BrokerError,
                };
                throw new BusException($"kafka: creating topic '{topic.Name}' failed: {error.Code} ({error.Reason})", reason, Backend, topic.Name, reason == BusFailureReason.BrokerError, ex);
            }
        }

        var partitions = await PartitionCountAsync(topic.Name, cancellationToken).ConfigureAwait(false);
        if (options.Partitions is { } requested && requested != partitions)
        {
            if (canChoose || existed)
            {
                throw new BusException(
                    $"kafka: topic '{topic.Name}' exists with {partitions} partitions; {requested} were requested.",
                    BusFailureReason.TopicConflict, Backend, topic.Name);
            }

            Log.PartitionCountNotChosen(_logger, topic.Name, partitions, requested);
        }
        else
        {
            Log.TopicExists(_logger, topic.Name, partitions);
        }
    }

    /// <summary>
    /// Deletes the topic (DeleteTopics); Kafka drops the committed offsets of a deleted topic itself. Groups are not
    /// deleted: a Kafka group spans topics (the dead-letter group <c>dlq</c> reads every dead-letter topic), so deleting
    /// one would lose its offsets elsewhere. Where the cluster did not answer CreateTopics (the librdkafka mock cluster),
    /// it would not answer this either, and waiting for that on every dispose is pointless: the topic is left, and the
    /// log says so.
    /// </summary>
    public override async ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        foreach (var group in topic.DurableGroups)
        {
            _durableGroups.TryRemove((topic.Name, group), out _);
        }

        if (CreateTopicsUnavailable.ContainsKey(_endpoint.BootstrapServers))
        {
            Log.TopicNotDeleted(_logger, topic.Name);
            return;
        }

        var timeout = TimeSpan.FromMilliseconds(_endpoint.CreateTopicsTimeoutMs);
        try
        {
            await Admin.DeleteTopicsAsync([topic.Name], new DeleteTopicsOptions { RequestTimeout = timeout, OperationTimeout = timeout })
                .WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (DeleteTopicsException ex) when (ex.Results.All(r => r.Error.Code == ErrorCode.UnknownTopicOrPart))
        {
            // Already gone.
        }
    }

    /// <summary>
    /// The topic's partition count from metadata. A metadata request for a missing topic makes a broker with
    /// auto-creation enabled create it; leaders may take a moment, so this retries until every partition has one.
    /// </summary>
    internal async Task<int> PartitionCountAsync(string topic, CancellationToken cancellationToken)
    {
        var admin = Admin;
        var deadline = DateTime.UtcNow + _context.Options.OperationTimeout;
        string problem = "no metadata";
        while (true)
        {
            var metadata = await Task.Run(() => admin.GetMetadata(topic, TimeSpan.FromSeconds(5)), CancellationToken.None).WaitAsync(cancellationToken).ConfigureAwait(false);
            var entry = metadata.Topics.FirstOrDefault(t => t.Topic == topic);
            if (entry is not null && !entry.Error.IsError && entry.Partitions.Count > 0 && entry.Partitions.All(p => p.Leader >= 0 && !p.Error.IsError))
            {
                return entry.Partitions.Count;
            }

            problem = entry is null ? "topic missing from metadata" : entry.Error.IsError ? $"{entry.Error.Code} ({entry.Error.Reason})" : "partitions without leaders";
            if (entry?.Error.Code is ErrorCode.TopicAuthorizationFailed or ErrorCode.TopicException)
            {
                throw new BusException($"kafka: topic '{topic}': {problem}", entry.Error.Code == ErrorCode.TopicException ? BusFailureReason.InvalidTopic : BusFailureReason.Unauthorized, Backend, topic);
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new BusException($"kafka: topic '{topic}' is not available: {problem} (is broker auto-creation disabled and CreateTopics unavailable?)", BusFailureReason.BrokerError, Backend, topic, isTransient: true);
            }

            await Task.Delay(100, cancellationToken).ConfigureAwait(false);
        }
    }

    private static Dictionary<string, string> TopicConfigs(TopicOptions options)
    {
        var configs = new Dictionary<string, string>(StringComparer.Ordinal);
        if (options.Retention is { } retention)
        {
            configs["retention.ms"] = ((long)retention.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        }

        foreach (var (name, value) in options.Properties)
        {
            configs[name] = value;
        }

        return configs;
    }
}
