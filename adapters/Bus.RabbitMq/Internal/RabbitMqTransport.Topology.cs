using System.Globalization;
using Bus.Transport;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Bus.RabbitMq.Internal;

/// <summary>Topology: exchanges for topics, queues for groups, marker queues that record topic options.</summary>
internal sealed partial class RabbitMqTransport
{
    private const string QueueTypeProperty = "queue-type";

    public override async ValueTask EnsureTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        var options = topic.Options;
        var queueType = RabbitMqEndpoint.ParseQueueType(options.Properties.TryGetValue(QueueTypeProperty, out var type) ? type : null, $"topic '{topic.Name}'", "TopicOptions.Properties[\"queue-type\"]");
        await WithChannelAsync(async channel =>
        {
            await channel.ExchangeDeclareAsync(topic.Name, ExchangeType.Fanout, durable: true, autoDelete: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            return true;
        }, "declare the exchange", topic.Name, cancellationToken).ConfigureAwait(false);

        // Options that were set are recorded on the broker, where a conflicting redeclaration fails.
        await RecordOptionsAsync(
            topic.Name,
            [
                (RecordedOptions[0], options.Partitions),
                (RecordedOptions[1], options.Ordered is { } ordered ? (ordered ? 1 : 0) : null),
                (RecordedOptions[2], options.Retention is { } retention ? (long)retention.TotalMilliseconds : null),
                (RecordedOptions[3], queueType is { } q ? (long)q : null),
            ],
            cancellationToken).ConfigureAwait(false);

        var known = _topics.GetOrAdd(topic.Name, static (_, o) => o.Clone(), options);
        lock (known)
        {
            known.Ordered ??= options.Ordered;
            known.Partitions ??= options.Partitions;
            known.Retention ??= options.Retention;
            if (type is not null)
            {
                known.Properties.TryAdd(QueueTypeProperty, type);
            }
        }

        if (topic.IsDeadLetterTopic)
        {
            _deadLetterTopics[topic.Name] = true;
        }

        foreach (var group in topic.DurableGroups)
        {
            await DeclareGroupAsync(topic.Name, group, SubscriptionOptions.DefaultMaxDeliveries, null, cancellationToken).ConfigureAwait(false);
        }

        Log.TopicDeclared(_logger, topic.Name, topic.DurableGroups.Count);
    }

    /// <summary>
    /// Deletes the groups' queues, the queues that record the topic's options, and the topic's exchange. RabbitMQ
    /// answers a delete of a queue or exchange that does not exist with success, so this is idempotent. Delay queues
    /// of the topic expire by themselves.
    /// </summary>
    public override async ValueTask DeleteTopicAsync(TopicDefinition topic, CancellationToken cancellationToken)
    {
        await WithChannelAsync(async channel =>
        {
            foreach (var group in topic.DurableGroups)
            {
                await channel.QueueDeleteAsync(QueueName(topic.Name, group), ifUnused: false, ifEmpty: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            foreach (var option in RecordedOptions)
            {
                await channel.QueueDeleteAsync(OptionMarker(topic.Name, option), ifUnused: false, ifEmpty: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            }

            await channel.ExchangeDeleteAsync(topic.Name, ifUnused: false, cancellationToken: cancellationToken).ConfigureAwait(false);
            return true;
        }, "delete the topic", topic.Name, cancellationToken).ConfigureAwait(false);
        _topics.TryRemove(topic.Name, out _);
        _deadLetterTopics.TryRemove(topic.Name, out _);
        _privateTopics.TryRemove(topic.Name, out _);
    }

    /// <summary>Queues of this topic get x-expires (<see cref="RabbitMqEndpoint.ReplyQueueExpiry"/>); its exchange stays until deleted (exchanges hold no messages).</summary>
    public override void RegisterPrivateTopic(string topic) => _privateTopics[topic] = true;

    /// <summary>
    /// Declares the group's queue and binds it, unless it exists: then it is used with the arguments it was created
    /// with (AMQP 0-9-1 cannot read a queue's arguments, and redeclaring with others would fail).
    /// </summary>
    private async Task DeclareGroupAsync(string topic, string group, int maxDeliveries, string? deadLetterTopic, CancellationToken cancellationToken)
    {
        var queue = QueueName(topic, group);
        if (Utf8Length(queue) > 255)
        {
            throw new BusConfigurationException($"rabbitmq: the queue name '{queue}' for group '{group}' of topic '{topic}' is longer than RabbitMQ's 255 bytes; use a shorter group name.", RabbitMqEndpoint.BackendName);
        }

        if (await QueueExistsAsync(queue, cancellationToken).ConfigureAwait(false))
        {
            Log.QueueExists(_logger, queue);
        }
        else
        {
            var (arguments, quorum, sac, limit) = GroupArguments(topic, maxDeliveries, deadLetterTopic);
            try
            {
                await WithChannelAsync(async channel =>
                {
                    await channel.QueueDeclareAsync(queue, durable: true, exclusive: false, autoDelete: false, arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
                    return true;
                }, "declare the group queue", topic, cancellationToken).ConfigureAwait(false);
                Log.QueueDeclared(_logger, queue, quorum ? "quorum" : "classic", sac, limit);
            }
            catch (BusException ex) when (ex.Reason == BusFailureReason.TopicConflict)
            {
                // Another consumer created it at the same moment with other arguments: use theirs.
                if (!await QueueExistsAsync(queue, cancellationToken).ConfigureAwait(false))
                {
                    throw;
                }
            }
        }

        await WithChannelAsync(async channel =>
        {
            await channel.QueueBindAsync(queue, topic, routingKey: "", cancellationToken: cancellationToken).ConfigureAwait(false);
            return true;
        }, "bind the group queue", topic, cancellationToken).ConfigureAwait(false);
    }

    private (Dictionary<string, object?> Arguments, bool Quorum, bool SingleActiveConsumer, int DeliveryLimit) GroupArguments(string topic, int maxDeliveries, string? deadLetterTopic)
    {
        var known = _topics.TryGetValue(topic, out var options) ? options : null;
        RabbitMqQueueType queueType;
        bool sac;
        lock (known ?? new object())
        {
            queueType = RabbitMqEndpoint.ParseQueueType(known is not null && known.Properties.TryGetValue(QueueTypeProperty, out var type) ? type : null, $"topic '{topic}'", "TopicOptions.Properties[\"queue-type\"]") ?? _endpoint.QueueType;
            sac = known?.Ordered ?? _endpoint.SingleActiveConsumer;
        }

        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["x-queue-type"] = queueType == RabbitMqQueueType.Quorum ? "quorum" : "classic",
        };
        if (sac)
        {
            arguments["x-single-active-consumer"] = true;
        }

        var limit = 0;
        var isDeadLetterTopic = _deadLetterTopics.ContainsKey(topic);
        if (queueType == RabbitMqQueueType.Quorum && !isDeadLetterTopic)
        {
            // Core dead-letters (with reason headers) when it sees a delivery count above MaxDeliveries; the broker's
            // limit sits a little above, for consumers that crash before core can act, and dead-letters at least once.
            limit = _endpoint.DeliveryLimit ?? maxDeliveries + 2;
            arguments["x-delivery-limit"] = limit;
            arguments["x-dead-letter-exchange"] = deadLetterTopic ?? GetDeadLetterTopic(topic);
            arguments["x-dead-letter-strategy"] = "at-least-once";
            arguments["x-overflow"] = "reject-publish";
        }

        if (_privateTopics.ContainsKey(topic))
        {
            // Deleted on dispose; after a crash the broker deletes it once it has had no consumer this long. The reply
            // topic's dead-letter queue never has one, so it goes after that time even while the bus lives: nothing
            // is lost, as the reply listener acknowledges every reply (only a broker-counted crash loop dead-letters).
            arguments["x-expires"] = (int)_endpoint.ReplyQueueExpiry.TotalMilliseconds;
        }

        return (arguments, queueType == RabbitMqQueueType.Quorum, sac, limit);
    }

    /// <summary>Whether the queue exists (a passive declaration; a 404 closes that channel, so it gets its own).</summary>
    private async Task<bool> QueueExistsAsync(string queue, CancellationToken cancellationToken)
    {
        var connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        IChannel? channel = null;
        try
        {
            channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            await channel.QueueDeclarePassiveAsync(queue, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (OperationInterruptedException ex) when (ex.ShutdownReason?.ReplyCode == 404)
        {
            return false;
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw Failure(ex, $"look up queue '{queue}'", null);
        }
        finally
        {
            if (channel is not null)
            {
                await _closer.CloseAsync(channel, null, "a topology channel").ConfigureAwait(false);
            }
        }
    }

    /// <summary>The topic options recorded on the broker, each in a queue of its own (<see cref="OptionMarker"/>).</summary>
    private static readonly string[] RecordedOptions = ["partitions", "ordered", "retention", QueueTypeProperty];

    private static string OptionMarker(string topic, string option) => $"{topic}:bus-topic-{option}";

    /// <summary>
    /// Records each option that is set as the <c>x-max-length-bytes</c> argument of an empty, unbound classic queue
    /// <c>&lt;topic&gt;:bus-topic-&lt;name&gt;</c>. RabbitMQ compares that argument when the queue is declared again, so a
    /// different value fails with 406 PRECONDITION_FAILED, which becomes a <see cref="BusFailureReason.TopicConflict"/>.
    /// On a conflict, the markers this call created are deleted again, so a failed ensure records nothing.
    /// </summary>
    private async Task RecordOptionsAsync(string topic, (string Name, long? Value)[] options, CancellationToken cancellationToken)
    {
        var created = new List<string>();
        foreach (var (name, value) in options)
        {
            if (value is not { } recorded)
            {
                continue;
            }

            var marker = OptionMarker(topic, name);
            var existed = await QueueExistsAsync(marker, cancellationToken).ConfigureAwait(false);
            var arguments = new Dictionary<string, object?>(StringComparer.Ordinal)
            {
                ["x-queue-type"] = "classic",
                ["x-max-length"] = 0,
                ["x-max-length-bytes"] = Math.Max(0, recorded),
            };
            try
            {
                await WithChannelAsync(async channel =>
                {
                    await channel.QueueDeclareAsync(marker, durable: true, exclusive: false, autoDelete: false, arguments, cancellationToken: cancellationToken).ConfigureAwait(false);
                    return true;
                }, "record the topic options", topic, cancellationToken).ConfigureAwait(false);
                if (!existed)
                {
                    created.Add(marker);
                }
            }
            catch (BusException ex) when (ex.Reason == BusFailureReason.TopicConflict)
            {
                foreach (var undo in created)
                {
                    await WithChannelAsync(async channel =>
                    {
                        await channel.QueueDeleteAsync(undo, ifUnused: false, ifEmpty: false, cancellationToken: CancellationToken.None).ConfigureAwait(false);
                        return true;
                    }, "undo the topic options", topic, CancellationToken.None).ConfigureAwait(false);
                }

                throw new BusException(
                    string.Create(CultureInfo.InvariantCulture, $"rabbitmq: topic '{topic}' exists with another {name} than the requested {Show(name, recorded)}"),
                    BusFailureReason.TopicConflict, RabbitMqEndpoint.BackendName, topic, isTransient: false, ex.InnerException);
            }
        }
    }

    private static string Show(string name, long value) => name switch
    {
        "ordered" => value == 1 ? "true" : "false",
        QueueTypeProperty => ((RabbitMqQueueType)value).ToString().ToLowerInvariant(),
        "retention" => TimeSpan.FromMilliseconds(value).ToString(),
        _ => value.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>Runs one topology operation on a channel of its own (a failed declaration closes its channel).</summary>
    private async Task<T> WithChannelAsync<T>(Func<IChannel, Task<T>> action, string operation, string? topic, CancellationToken cancellationToken)
    {
        var connection = await GetConnectionAsync(cancellationToken).ConfigureAwait(false);
        IChannel? channel = null;
        try
        {
            channel = await connection.CreateChannelAsync(cancellationToken: cancellationToken).ConfigureAwait(false);
            return await action(channel).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw Failure(ex, operation, topic);
        }
        finally
        {
            if (channel is not null)
            {
                await _closer.CloseAsync(channel, null, "a topology channel").ConfigureAwait(false);
            }
        }
    }
}
