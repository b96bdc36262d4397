using System.Diagnostics;
using Bus.Internal;
using Bus.Transport;

namespace Bus;

public sealed partial class MessageBus
{
    /// <inheritdoc />
    public ValueTask PublishAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken = default)
    {
        ThrowIfPublishingClosed();
        ArgumentNullException.ThrowIfNull(topic);
        // An ensured topic was validated when it was ensured: skip the character scan on the hot path.
        var ready = _connected && _ensuredTopics.TryGetValue(topic, out var ensured) && ensured.IsCompletedSuccessfully;
        if (!ready)
        {
            ValidateTopic(topic);
        }

        ValidateMessage(topic, message);
        if (TraceContext.IsListenedTo)
        {
            return PublishTracedAsync(topic, message, ready, cancellationToken);
        }

        var sent = CarryTraceContext(topic, message, null);
        if (!ready)
        {
            return PublishSlowAsync(topic, sent, cancellationToken);
        }

        // Counted before the transport is called: its synchronous part (Kafka's Produce, a channel opened on first use)
        // can take a while, and disposing must not close the connection under it.
        BeginPublish();
        ValueTask pending;
        try
        {
            pending = StartPublish(topic, sent, cancellationToken);
        }
        catch
        {
            EndPublish();
            throw;
        }

        if (pending.IsCompletedSuccessfully)
        {
            EndPublish();
            pending.GetAwaiter().GetResult();
            if (BusTelemetry.Published.Enabled)
            {
                BusTelemetry.Published.Add(1, BusTelemetry.Tags(Backend, topic));
            }

            return default;
        }

        return AwaitPublishAsync(pending, topic, 1, counted: true, cancellationToken);
    }

    /// <summary>
    /// Counts a publish under way, for disposing to wait for; throws when disposing has closed publishing. Both sides
    /// write with a full fence and then read the other's field, so either the publish sees publishing closed or the
    /// wait sees the publish.
    /// </summary>
    private void BeginPublish()
    {
        Interlocked.Increment(ref _publishing);
        if (Volatile.Read(ref _publishingClosed) != 0)
        {
            Interlocked.Decrement(ref _publishing);
            ThrowIfPublishingClosed();
        }
    }

    private void EndPublish() => Interlocked.Decrement(ref _publishing);

    /// <inheritdoc />
    public async ValueTask PublishBatchAsync(string topic, IReadOnlyList<OutgoingMessage> messages, CancellationToken cancellationToken = default)
    {
        ThrowIfPublishingClosed();
        ValidateTopic(topic);
        ArgumentNullException.ThrowIfNull(messages);
        for (var i = 0; i < messages.Count; i++)
        {
            ValidateMessage(topic, messages[i]);
        }

        if (messages.Count == 0)
        {
            return;
        }

        var activity = TraceContext.StartSend(Backend, topic, null, messages.Count);
        var confirmations = new BatchConfirmations(messages.Count);
        BeginPublish();
        try
        {
            await PublishBatchCoreAsync(topic, CarryTraceContext(topic, messages, activity), confirmations, cancellationToken).ConfigureAwait(false);
        }
        catch (BusException ex) when (ex is not MessageTooLargeException) // that one is validation (trace headers added): nothing was sent
        {
            TraceContext.Failed(activity, ex);
            throw Unconfirmed(ex, topic, messages, confirmations);
        }
        catch (Exception ex)
        {
            TraceContext.Failed(activity, ex);
            throw;
        }
        finally
        {
            EndPublish();
            TraceContext.End(activity);
        }
    }

    /// <summary>
    /// What a failed batch throws: which of the caller's messages were not confirmed (the transport marked the others
    /// before it failed), with the confirmed ones counted as published.
    /// </summary>
    private PublishBatchException Unconfirmed(BusException failure, string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations)
    {
        var unconfirmed = new List<OutgoingMessage>();
        for (var i = 0; i < messages.Count; i++)
        {
            if (!confirmations.IsConfirmed(i))
            {
                unconfirmed.Add(messages[i]);
            }
        }

        if (unconfirmed.Count < messages.Count)
        {
            BusTelemetry.Published.Add(messages.Count - unconfirmed.Count, BusTelemetry.Tags(Backend, topic));
        }

        return new PublishBatchException(failure, topic, messages.Count, unconfirmed);
    }

    private async ValueTask PublishBatchCoreAsync(string topic, IReadOnlyList<OutgoingMessage> messages, BatchConfirmations confirmations, CancellationToken cancellationToken)
    {
        await EnsureReadyAsync(topic, cancellationToken).ConfigureAwait(false);

        // A transport that does not bound its own time may still be reading the caller's messages (encoding a batch as
        // it goes) when this call gives up; the caller may reuse them once it returns. So a call that ends early stops
        // the transport (its token) and waits, within the operation timeout, until it has stopped.
        using var stop = Transport.BoundsPublishTime ? null : CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task pending;
        try
        {
            pending = Transport.PublishBatchAsync(topic, messages, confirmations, stop?.Token ?? cancellationToken).AsTask();
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw Wrap(ex, "publish batch", topic);
        }

        try
        {
            await AwaitPublishAsync(new ValueTask(pending), topic, messages.Count, counted: false, cancellationToken).ConfigureAwait(false);
        }
        catch when (stop is not null && !pending.IsCompleted)
        {
            await stop.CancelAsync().ConfigureAwait(false);
            await pending.WaitAsync(_options.OperationTimeout, CancellationToken.None).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (pending.IsCompletedSuccessfully)
            {
                // Confirmed whole while it was being stopped: the batch succeeded (transports mark nothing on success).
                BusTelemetry.Published.Add(messages.Count, BusTelemetry.Tags(Backend, topic));
                return;
            }

            throw;
        }
    }

    /// <summary>
    /// A publish with its send span. An async method of its own: starting a span makes it the current activity, and
    /// only an async method's changes to the current activity are undone for its caller when it returns.
    /// </summary>
    private async ValueTask PublishTracedAsync(string topic, OutgoingMessage message, bool ready, CancellationToken cancellationToken)
    {
        var activity = TraceContext.StartSend(Backend, topic, message, 1);
        BeginPublish();
        try
        {
            await SendOneAsync(topic, CarryTraceContext(topic, message, activity), ready, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            TraceContext.Failed(activity, ex);
            throw;
        }
        finally
        {
            EndPublish();
            TraceContext.End(activity);
        }
    }

    /// <summary>
    /// What to send: the message, or a copy that carries the trace context of <paramref name="activity"/> (or of the
    /// application's current activity), checked against the size limit again for the headers it adds.
    /// </summary>
    private OutgoingMessage CarryTraceContext(string topic, OutgoingMessage message, Activity? activity)
    {
        var sent = TraceContext.Carry(message, activity ?? Activity.Current);
        if (!ReferenceEquals(sent, message))
        {
            CheckSize(topic, sent);
        }

        return sent;
    }

    /// <summary>The messages of a batch to send, each as <see cref="CarryTraceContext(string, OutgoingMessage, Activity?)"/> makes it; the caller's list when none changed.</summary>
    private IReadOnlyList<OutgoingMessage> CarryTraceContext(string topic, IReadOnlyList<OutgoingMessage> messages, Activity? activity)
    {
        var context = activity ?? Activity.Current;
        if (context is null)
        {
            return messages;
        }

        OutgoingMessage[]? copies = null;
        for (var i = 0; i < messages.Count; i++)
        {
            var sent = CarryTraceContext(topic, messages[i], context);
            if (!ReferenceEquals(sent, messages[i]))
            {
                copies ??= [.. messages];
                copies[i] = sent;
            }
        }

        return copies ?? messages;
    }

    private async ValueTask PublishSlowAsync(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        BeginPublish();
        try
        {
            await SendOneAsync(topic, message, ready: false, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            EndPublish();
        }
    }

    /// <summary>Ensures the topic unless it is <paramref name="ready"/>, then publishes and awaits the confirmation. The caller counts the publish.</summary>
    private async ValueTask SendOneAsync(string topic, OutgoingMessage message, bool ready, CancellationToken cancellationToken)
    {
        if (!ready)
        {
            await EnsureReadyAsync(topic, cancellationToken).ConfigureAwait(false);
        }

        await AwaitPublishAsync(StartPublish(topic, message, cancellationToken), topic, 1, counted: false, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Hands the message to the transport; a synchronous failure is wrapped like an asynchronous one.</summary>
    private ValueTask StartPublish(string topic, OutgoingMessage message, CancellationToken cancellationToken)
    {
        try
        {
            return Transport.PublishAsync(topic, message, cancellationToken);
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw Wrap(ex, "publish", topic);
        }
    }

    private async ValueTask AwaitPublishAsync(ValueTask pending, string topic, int count, bool counted, CancellationToken cancellationToken)
    {
        try
        {
            // Reached only when the backend did not confirm synchronously. A timer per call (and its promise) is what
            // publishing one by one cost most beyond the transport, so it is left out where the client bounds the time.
            var task = pending.AsTask();
            await (Transport.BoundsPublishTime
                ? (cancellationToken.CanBeCanceled ? task.WaitAsync(cancellationToken) : task)
                : task.WaitAsync(_options.OperationTimeout, cancellationToken)).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            throw new BusException($"{Backend}: publish to topic '{topic}' was not confirmed within {_options.OperationTimeout.TotalSeconds:0.#} s", BusFailureReason.Timeout, Backend, topic, isTransient: true, ex);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw Wrap(ex, "publish", topic);
        }
        finally
        {
            if (counted)
            {
                EndPublish();
            }
        }

        BusTelemetry.Published.Add(count, BusTelemetry.Tags(Backend, topic));
    }

    /// <inheritdoc />
    public async ValueTask EnsureTopicAsync(string topic, TopicOptions? options = null, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ValidateTopic(topic);
        await ConnectAsync(cancellationToken).ConfigureAwait(false);
        await ProvisionAsync(new TopicDefinition(topic, options?.Clone() ?? new TopicOptions(), [], false), cancellationToken).ConfigureAwait(false);
        _ensuredTopics.TryAdd(topic, Task.CompletedTask);
        await EnsureDeadLetterTopicAsync(Transport.GetDeadLetterTopic(topic), topic, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Deletes a topic and its dead-letter topic, with what the backend keeps for <paramref name="groups"/> on them
    /// (their queues or streams) and for the dead-letter group. The messages in them are lost. Meant for tests and
    /// tooling that make topics of their own: the conformance suite removes each case's topics with it, so that a run
    /// against a shared broker leaves nothing behind. Deleting what does not exist is not an error.
    /// </summary>
    /// <remarks>
    /// A group not named here keeps its queue where a group is a queue of its own (RabbitMQ, SQS). Kafka deletes the
    /// topics but never a consumer group (a group spans topics), and leaves the topics where the cluster does not answer
    /// admin requests (the librdkafka mock cluster). SQS refuses a deleted queue's name for about 60 seconds, so a topic
    /// of the same name cannot be used again at once there. Subscriptions still open on the topic may fail or, on
    /// Redis, create the stream again: close them first.
    /// </remarks>
    /// <param name="topic">The topic.</param>
    /// <param name="groups">The groups that consumed from it.</param>
    /// <param name="cancellationToken">Cancels the call (part of it may be done).</param>
    /// <exception cref="BusException">The backend failed, or did not answer within <see cref="BusOptions.OperationTimeout"/>.</exception>
    public async ValueTask DeleteTopicAsync(string topic, IEnumerable<string> groups, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ValidateTopic(topic);
        ArgumentNullException.ThrowIfNull(groups);
        var named = groups.Distinct(StringComparer.Ordinal).ToArray();
        await ConnectAsync(cancellationToken).ConfigureAwait(false);
        var deadLetterTopic = Transport.GetDeadLetterTopic(topic);
        foreach (var definition in new[]
        {
            new TopicDefinition(topic, new TopicOptions(), named, false),
            new TopicDefinition(deadLetterTopic, new TopicOptions(), [.. named.Append(BusDefaults.DeadLetterGroup).Distinct(StringComparer.Ordinal)], true),
        })
        {
            try
            {
                await WithinOperationTimeoutAsync(() => Transport.DeleteTopicAsync(definition, cancellationToken), "delete topic", "deleting", definition.Name, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                // Ensured again (with its dead-letter topic) if this bus uses the name later.
                _ensuredTopics.TryRemove(definition.Name, out _);
            }
        }
    }

    /// <summary>Connects if needed and ensures the topic and its dead-letter topic once per bus.</summary>
    private async ValueTask EnsureReadyAsync(string topic, CancellationToken cancellationToken)
    {
        await ConnectAsync(cancellationToken).ConfigureAwait(false);
        var ensured = _ensuredTopics.GetOrAdd(topic, static (name, bus) => bus.EnsureDefaultAsync(name), this);
        try
        {
            await ensured.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch when (ensured.IsFaulted || ensured.IsCanceled)
        {
            // Let the next call try again rather than caching a failure.
            _ensuredTopics.TryRemove(new KeyValuePair<string, Task>(topic, ensured));
            throw;
        }
    }

    private async Task EnsureDefaultAsync(string topic)
    {
        await ProvisionAsync(new TopicDefinition(topic, new TopicOptions(), [], false), CancellationToken.None).ConfigureAwait(false);
        await EnsureDeadLetterTopicAsync(Transport.GetDeadLetterTopic(topic), topic, CancellationToken.None).ConfigureAwait(false);
    }

    /// <summary>Ensures <paramref name="deadLetterTopic"/>, the dead-letter topic of <paramref name="topic"/>, once per bus.</summary>
    private async ValueTask EnsureDeadLetterTopicAsync(string deadLetterTopic, string topic, CancellationToken cancellationToken)
    {
        if (_ensuredTopics.TryGetValue(deadLetterTopic, out var done) && done.IsCompletedSuccessfully)
        {
            return;
        }

        try
        {
            await ProvisionAsync(new TopicDefinition(deadLetterTopic, new TopicOptions(), [BusDefaults.DeadLetterGroup], true), cancellationToken).ConfigureAwait(false);
        }
        catch (BusException ex) when (ex.GetType() == typeof(BusException) && ex.Topic == deadLetterTopic && topic != deadLetterTopic)
        {
            // The caller published to, ensured or joined 'topic', so the failure names it (as it would had ensuring
            // 'topic' itself failed): where ensuring a topic costs nothing (Redis: a stream without durable groups),
            // its dead-letter topic's group is the first thing to ask the backend, and a caller that matches failures
            // by topic would not recognise the dead-letter topic's name. Subclasses (a configuration error) are left
            // as they are, so that callers catching them by type still do.
            throw new BusException($"{ex.Message} (the dead-letter topic of '{topic}')", ex.Reason, ex.Backend, topic, ex.IsTransient, ex);
        }

        _ensuredTopics.TryAdd(deadLetterTopic, Task.CompletedTask);
    }

    private ValueTask ProvisionAsync(TopicDefinition definition, CancellationToken cancellationToken)
        => WithinOperationTimeoutAsync(() => Transport.EnsureTopicAsync(definition, cancellationToken), "ensure topic", "ensuring", definition.Name, cancellationToken);

    /// <summary>
    /// Runs a topic operation of the transport within <see cref="BusOptions.OperationTimeout"/>, its failures (also one
    /// thrown before the operation returns) wrapped.
    /// </summary>
    private async ValueTask WithinOperationTimeoutAsync(Func<ValueTask> operation, string what, string doing, string topic, CancellationToken cancellationToken)
    {
        try
        {
            await operation().AsTask().WaitAsync(_options.OperationTimeout, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException ex)
        {
            throw new BusException($"{Backend}: {doing} topic '{topic}' did not complete within {_options.OperationTimeout.TotalSeconds:0.#} s", BusFailureReason.Timeout, Backend, topic, isTransient: true, ex);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            throw Wrap(ex, what, topic);
        }
    }

    private void ValidateTopic(string topic)
    {
        ArgumentNullException.ThrowIfNull(topic);
        string? problem;
        if (topic.Length == 0 || string.IsNullOrWhiteSpace(topic))
        {
            problem = "it is empty";
        }
        else if (topic.Length > Capabilities.MaxTopicNameLength)
        {
            problem = $"it is {topic.Length} characters long; the maximum is {Capabilities.MaxTopicNameLength}";
        }
        else
        {
            problem = Transport.ValidateTopicName(topic);
        }

        if (problem is not null)
        {
            var shown = topic.Length > 64 ? topic[..64] + "…" : topic;
            throw new BusException($"{Backend}: illegal topic name '{shown}': {problem}.", BusFailureReason.InvalidTopic, Backend, shown);
        }
    }

    /// <summary>Rejects reserved header names (see <see cref="ReservedHeaders"/>) before anything is sent.</summary>
    private void ValidateHeaders(string topic, Dictionary<string, string> headers)
    {
        foreach (var name in headers.Keys)
        {
            if (ReservedHeaders.IsReserved(name))
            {
                throw new BusException(
                    $"{Backend}: header '{name}' of a message for topic '{topic}' is reserved: {ReservedHeaders.List} carry the message's own fields (set Key, MessageId, CorrelationId, ContentType or ReplyTo instead).",
                    BusFailureReason.InvalidMessage, Backend, topic);
            }
        }
    }

    private void ValidateMessage(string topic, OutgoingMessage message)
    {
        ArgumentNullException.ThrowIfNull(message);
        message.AssignIdIfMissing();
        if (message.Body.Length > Capabilities.MaxMessageSize)
        {
            throw new MessageTooLargeException(Backend, topic, message.Body.Length, Capabilities.MaxMessageSize);
        }

        if (message.Delay is { } delay && delay > TimeSpan.Zero && !Capabilities.Supports(BusFeatures.DelayedDelivery))
        {
            throw new BusException(Capabilities.ExplainMissing(BusFeatures.DelayedDelivery)!, BusFailureReason.NotSupported, Backend, topic);
        }

        if (message.HeadersOrNull is { Count: > 0 } headers)
        {
            ValidateHeaders(topic, headers);
        }

        CheckSize(topic, message);
        if (Transport.ValidateMessage(message) is { } problem)
        {
            throw new BusException($"{Backend}: a message for topic '{topic}' cannot be sent: {problem}.", BusFailureReason.InvalidMessage, Backend, topic);
        }
    }

    private void CheckSize(string topic, OutgoingMessage message)
    {
        // Measuring walks every string; skip it when even three bytes per character could not reach the limit (and the
        // transport's encoding grows no more than that).
        if (!Transport.EncodingCanExceedQuickBound
            && message.Body.Length + (MessageSize.CharactersOutsideBody(message) * 3L) <= Capabilities.MaxMessageSize)
        {
            return;
        }

        var size = Transport.MeasureMessage(message);
        if (size > Capabilities.MaxMessageSize)
        {
            throw new MessageTooLargeException(Backend, topic, size, Capabilities.MaxMessageSize);
        }
    }
}
