using System.Collections.Concurrent;
using Bus.Transport;
using Confluent.Kafka;
using Confluent.Kafka.Admin;
using Microsoft.Extensions.Logging;

namespace Bus.Kafka.Internal;

/// <summary>
/// The Kafka transport: one idempotent producer (acks=all, murmur2) shared by every publish, an admin client on the
/// producer's handle for topics and metadata, and one consumer per receiver.
/// </summary>
internal sealed partial class KafkaTransport : MessageTransport
{
    /// <summary>Clusters (by bootstrap list) that did not answer CreateTopics: later ensures go straight to auto-creation.</summary>
    private static readonly ConcurrentDictionary<string, bool> CreateTopicsUnavailable = new(StringComparer.Ordinal);

    private readonly TransportContext _context;
    private readonly KafkaEndpoint _endpoint;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<(string Topic, string Group), byte> _durableGroups = new();
    private readonly object _clientLock = new();
    private IProducer<byte[]?, byte[]>? _producer;
    private IAdminClient? _admin;
    private readonly int? _messageTimeoutMs;
    private int _disposed;

    /// <summary>
    /// The longest disposing a receiver waits for its close while the cluster answers: the operation timeout, but no more
    /// than this. A healthy close takes up to the receiver's leave wait (5 s, a rebalance under way) and a commit round
    /// trip; a frozen cluster holds librdkafka's synchronous commit for socket.timeout.ms (60 s), and the old fixed wait
    /// of 20 s per receiver made a bus with a subscription and a consumer take 20 s to dispose against a frozen mock
    /// cluster. Once a close ran out of time, each further one gets 0.5 s (one with nothing to commit finishes in that).
    /// </summary>
    private static readonly TimeSpan MaxCloseWait = TimeSpan.FromSeconds(10);

    public KafkaTransport(TransportContext context, KafkaEndpoint endpoint, BackendCapabilities capabilities)
    {
        _context = context;
        _endpoint = endpoint;
        Capabilities = capabilities;
        _logger = context.LoggerFactory.CreateLogger("Bus.Kafka");
        (_messageTimeoutMs, BoundsPublishTime) = PublishTimeout(Merge(_endpoint.Producer), context.Options.OperationTimeout);
        CloseWaits = new CloseWaits(TimeSpan.FromTicks(Math.Min(context.Options.OperationTimeout.Ticks, MaxCloseWait.Ticks)), TimeSpan.FromMilliseconds(500));
    }

    /// <summary>The bus's <see cref="BusOptions.OperationTimeout"/>.</summary>
    internal TimeSpan OperationTimeout => _context.Options.OperationTimeout;

    /// <summary>How long disposing a receiver waits for its close (see <see cref="MaxCloseWait"/>); an assignment counts as the cluster answering.</summary>
    internal CloseWaits CloseWaits { get; }

    public override BackendCapabilities Capabilities { get; }

    /// <summary>
    /// True when librdkafka gives up on a record within the bus's OperationTimeout (see <see cref="PublishTimeout"/>):
    /// the record then fails with Local_MsgTimedOut (a <see cref="BusFailureReason.Timeout"/>) instead of waiting for
    /// librdkafka's default of 300 s, and core starts no timer per publish.
    /// </summary>
    public override bool BoundsPublishTime { get; }

    internal ILogger Logger => _logger;

    internal KafkaEndpoint Endpoint => _endpoint;

    /// <summary>Kafka keeps no delivery count: the transport counts per group, topic, partition and offset.</summary>
    internal DeliveryCounts<(int Partition, long Offset)> Counts { get; } = new();

    /// <summary>Kafka's legal characters are exactly the conservative set: ASCII letters, digits, '.', '_' and '-'.</summary>
    public override string? ValidateTopicName(string topic) => TopicNames.ValidateConservative(topic);

    public override long MeasureMessage(OutgoingMessage message) => MessageSize.Estimate(message) + KafkaMessages.ReservedOverhead(message);

    public override async ValueTask ConnectAsync(CancellationToken cancellationToken)
    {
        var admin = Admin;
        var timeout = _context.Options.ConnectTimeout;
        var metadata = await Task.Run(() => admin.GetMetadata(timeout), CancellationToken.None).WaitAsync(cancellationToken).ConfigureAwait(false);
        if (metadata.Brokers.Count == 0)
        {
            throw new BusException($"kafka: {_context.RedactedUrl} answered with no brokers.", BusFailureReason.Connection, Backend, isTransient: true);
        }
    }

    /// <summary>
    /// Whether <paramref name="group"/> must see what was published before it first joined: a group named durable when
    /// this bus ensured <paramref name="topic"/>, or the dead-letter group (<see cref="BusDefaults.DeadLetterGroup"/>)
    /// on any topic, so that a bus in another process that never ensured the dead-letter topic behaves the same.
    /// </summary>
    internal bool IsDurableGroup(string topic, string group)
        => group == BusDefaults.DeadLetterGroup || _durableGroups.ContainsKey((topic, group));

    public override async ValueTask<TransportReceiver> OpenReceiverAsync(string topic, SubscriptionOptions options, CancellationToken cancellationToken)
    {
        ThrowIfDisposed();
        var receiver = new KafkaReceiver(this, topic, options, IsDurableGroup(topic, options.Group));
        try
        {
            await receiver.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await receiver.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        return receiver;
    }

    /// <summary>The librdkafka configuration for a new consumer of <paramref name="group"/>.</summary>
    internal ConsumerConfig ConsumerConfig(string group)
    {
        var config = new ConsumerConfig(Merge(_endpoint.Consumer))
        {
            GroupId = group,
            EnableAutoCommit = true,          // commits what the receiver stores: the contiguous acknowledged prefix
            EnableAutoOffsetStore = false,
            EnablePartitionEof = false,
        };
        config.AutoCommitIntervalMs ??= 1_000;
        config.AutoOffsetReset ??= AutoOffsetReset.Earliest; // only when a committed offset fell out of retention
        config.ClientId ??= "bus-" + group;
        return config;
    }

    public override async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        IProducer<byte[]?, byte[]>? producer;
        IAdminClient? admin;
        lock (_clientLock)
        {
            (producer, admin) = (_producer, _admin);
            (_producer, _admin) = (null, null);
        }

        if (producer is not null)
        {
            // Everything published was awaited by its caller; give stragglers a moment, then close.
            await Task.Run(() =>
            {
                admin?.Dispose();
                producer.Flush(TimeSpan.FromSeconds(5));
                producer.Dispose();
            }).ConfigureAwait(false);
        }

        await base.DisposeAsync().ConfigureAwait(false);
    }

    private IProducer<byte[]?, byte[]> Producer
    {
        get
        {
            ThrowIfDisposed();
            if (Volatile.Read(ref _producer) is { } ready)
            {
                return ready;
            }

            lock (_clientLock)
            {
                ThrowIfDisposed();
                if (_producer is null)
                {
                    var config = new ProducerConfig(Merge(_endpoint.Producer))
                    {
                        Acks = Acks.All,
                        EnableIdempotence = true,
                        // Java clients place keyed records with murmur2; keyless ones go to a random partition.
                        Partitioner = Confluent.Kafka.Partitioner.Murmur2Random,
                        // Leave room above the bus limit for Kafka's record overhead, so anything the bus lets through fits.
                        MessageMaxBytes = Math.Max(_endpoint.MaxMessageSize + 64 * 1024, 1_048_576),
                    };
                    // Batches start every produce before awaiting any, so 1 ms is enough to fill batches, while a
                    // single awaited publish waits at most 1 ms for company (librdkafka's default of 5 ms caps a
                    // one-by-one awaited publish at about 175/s).
                    if (config.Get("queue.buffering.max.ms") is null)
                    {
                        config.LingerMs ??= 1; // not over the alias the settings may have used
                    }

                    if (_messageTimeoutMs is { } timeoutMs)
                    {
                        config.MessageTimeoutMs = timeoutMs;
                    }

                    // A publish reads only the report's error. By default the client copies each record's headers,
                    // key and timestamp back out of librdkafka into every report: with the message-id header that
                    // cost 1.5-2 us of CPU per record in a one-thread test against the mock cluster.
                    config.DeliveryReportFields ??= "status";
                    config.ClientId ??= "bus-producer";
                    _producer = new ProducerBuilder<byte[]?, byte[]>(config)
                        .SetLogHandler((_, message) => Log.Client(_logger, "producer", message))
                        .SetErrorHandler((_, error) => Log.ClientError(_logger, "producer", error.Code.ToString(), error.Reason))
                        .Build();
                }

                return _producer;
            }
        }
    }

    private IAdminClient Admin
    {
        get
        {
            var producer = Producer;
            if (Volatile.Read(ref _admin) is { } ready)
            {
                return ready;
            }

            lock (_clientLock)
            {
                ThrowIfDisposed();
                return _admin ??= new DependentAdminClientBuilder(producer.Handle).Build();
            }
        }
    }

    /// <summary>
    /// The message.timeout.ms the producer sets (null: the settings decide), and whether librdkafka then gives up on
    /// a record within <paramref name="operationTimeout"/>. librdkafka's default is 300 s, so the producer sets the
    /// OperationTimeout, kept above linger.ms (librdkafka requires it): a publish fails within it, also one already
    /// sent and not answered (a test freezes the cluster). Settings that name the timeout win; 0 means none.
    /// </summary>
    internal static (int? MessageTimeoutMs, bool Bounded) PublishTimeout(Dictionary<string, string> producer, TimeSpan operationTimeout)
    {
        var limit = operationTimeout.TotalMilliseconds;
        if (LastOf(producer, "message.timeout.ms", "delivery.timeout.ms") is { } configured)
        {
            return (null, Milliseconds(configured) is > 0 and var ms && ms <= limit);
        }

        if (producer.ContainsKey("transactional.id"))
        {
            return (null, false); // librdkafka ties the timeout to transaction.timeout.ms then
        }

        var linger = Milliseconds(LastOf(producer, "linger.ms", "queue.buffering.max.ms")) ?? 1;
        var timeout = Math.Max((int)Math.Clamp(Math.Ceiling(limit), 1, int.MaxValue), linger + 1);
        return (timeout, timeout <= limit);
    }

    /// <summary>
    /// librdkafka reads an alias as the same property, and of several the one applied last wins: the settings are
    /// applied in their order here (common settings, then the producer's).
    /// </summary>
    private static string? LastOf(Dictionary<string, string> settings, string name, string alias)
    {
        string? last = null;
        foreach (var (key, value) in settings)
        {
            if (key == name || key == alias)
            {
                last = value;
            }
        }

        return last;
    }

    private static int? Milliseconds(string? text)
        => int.TryParse(text, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var value) ? value : null;

    private Dictionary<string, string> Merge(IReadOnlyDictionary<string, string> specific)
    {
        var merged = new Dictionary<string, string>(StringComparer.Ordinal) { ["bootstrap.servers"] = _endpoint.BootstrapServers };
        foreach (var (name, value) in _endpoint.Common)
        {
            merged[name] = value;
        }

        foreach (var (name, value) in specific)
        {
            merged[name] = value;
        }

        return merged;
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
}
