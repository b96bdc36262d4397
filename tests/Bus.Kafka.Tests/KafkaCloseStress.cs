using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using Confluent.Kafka;
using Microsoft.Extensions.Logging;

namespace Bus.Kafka.Tests;

/// <summary>
/// A reproducer for librdkafka aborting the process when a consumer closes while an assignment operation is still in
/// progress (<c>rd_kafka_cgrp_terminated: assert: !rd_kafka_assignment_in_progress</c>, confluentinc/librdkafka#4792):
/// members of one group on a topic of several partitions join and close at awkward moments (right after subscribing,
/// while another member's join rebalances the group, while acknowledgements and commits are in flight).
/// <para>
/// A native abort ends the process, so the rounds run in child processes (this test assembly, started with
/// <c>dotnet Bus.Kafka.Tests.dll stress-child …</c>) and the parent counts the children that died of SIGABRT. Run it
/// with <c>dotnet Bus.Kafka.Tests.dll stress [--mode bus|raw|raw-handlers] [--rounds N] [--rounds-per-child K]
/// [--parallel P] [--bootstrap servers]</c>, or through the opt-in test <see cref="KafkaCloseStressTests"/>.
/// </para>
/// Modes: <c>bus</c> is the adapter (KafkaReceiver) through the bus API; <c>raw</c> is a bare Confluent.Kafka
/// consumer with the adapter's settings and no rebalance handlers; <c>raw-handlers</c> adds what the adapter's
/// handlers do (a synchronous Committed() on assignment, Commit() on revocation, Commit() before Close()).
/// </summary>
internal static class KafkaCloseStress
{
    private const int MessagesPerRound = 200;

    /// <summary>A child's exit code when a round did not finish within <see cref="RoundLimit"/> (a close that hung).</summary>
    private const int HungExitCode = 3;

    private static readonly TimeSpan RoundLimit = TimeSpan.FromSeconds(40);

    /// <summary>Joins of this child that failed with a BusException (reported with each round).</summary>
    private static int JoinFailures;

    /// <summary>What a batch of rounds came to.</summary>
    public sealed record Summary(string Mode, int Rounds, int Children, int Aborts, int AssertionAborts, int Hangs, int OtherFailures, int Lost, int JoinFailures, TimeSpan Elapsed, string? FirstAbortLog)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture,
            $"mode {Mode}: {Aborts} aborted children ({AssertionAborts} on the librdkafka assertion), {Hangs} hung closes in {Rounds} rounds ({Children} child processes), {OtherFailures} other failures, {Lost} messages lost, {JoinFailures} failed joins, {Elapsed.TotalSeconds:0} s");
    }

    /// <summary>Entry point of <c>dotnet Bus.Kafka.Tests.dll stress …</c>: prints the summary, exits 1 on any abort.</summary>
    public static async Task<int> RunFromCommandLineAsync(string[] args)
    {
        var options = Options.Parse(args);
        var summary = await RunAsync(options, Console.Out);
        Console.WriteLine(summary);
        if (summary.FirstAbortLog is not null)
        {
            Console.WriteLine("first abort, log tail:");
            Console.WriteLine(summary.FirstAbortLog);
        }

        return summary.Aborts + summary.Hangs + summary.OtherFailures + summary.Lost == 0 ? 0 : 1;
    }

    /// <summary>Runs <see cref="Options.Rounds"/> rounds in child processes against the cluster named, or a mock cluster of its own.</summary>
    public static async Task<Summary> RunAsync(Options options, TextWriter progress)
    {
        KafkaTestCluster? cluster = null;
        var bootstrap = options.Bootstrap;
        if (bootstrap is null)
        {
            cluster = await KafkaTestCluster.StartAsync();
            bootstrap = cluster.BootstrapServers;
            progress.WriteLine($"stress: {cluster.Target}");
        }

        try
        {
            var clock = Stopwatch.StartNew();
            var rounds = 0;
            var children = 0;
            var aborts = 0;
            var assertionAborts = 0;
            var hangs = 0;
            var otherFailures = 0;
            var lost = 0;
            var joinFailures = 0;
            string? firstAbort = null;
            var gate = new object();
            var next = 0;
            var workers = Enumerable.Range(0, options.Parallel).Select(_ => Task.Run(async () =>
            {
                while (true)
                {
                    int first;
                    lock (gate)
                    {
                        if (next >= options.Rounds)
                        {
                            return;
                        }

                        first = next;
                        next += options.RoundsPerChild;
                    }

                    var count = Math.Min(options.RoundsPerChild, options.Rounds - first);
                    var result = await RunChildAsync(options, bootstrap, first, count);
                    lock (gate)
                    {
                        children++;
                        rounds += result.RoundsRun;
                        lost += result.Lost;
                        joinFailures += result.JoinFailures;
                        if (result.Aborted)
                        {
                            aborts++;
                            assertionAborts += result.Log.Contains("rd_kafka_assignment_in_progress", StringComparison.Ordinal) ? 1 : 0;
                            firstAbort ??= Tail(result.Log, 60);
                        }
                        else if (result.ExitCode == HungExitCode)
                        {
                            hangs++;
                            firstAbort ??= "hung:\n" + Tail(result.Log, 60);
                        }
                        else if (result.ExitCode != 0)
                        {
                            otherFailures++;
                            firstAbort ??= $"exit {result.ExitCode}:\n" + Tail(result.Log, 40);
                        }

                        progress.WriteLine(string.Create(CultureInfo.InvariantCulture,
                            $"stress: child {first / options.RoundsPerChild}: {result.RoundsRun}/{count} rounds, exit {result.ExitCode}{(result.Aborted ? " ABORTED" : result.ExitCode == HungExitCode ? " HUNG" : "")}, lost {result.Lost}, failed joins {result.JoinFailures}; total {aborts} aborts, {hangs} hangs in {rounds} rounds, {clock.Elapsed.TotalSeconds:0} s"));
                    }
                }
            })).ToList();
            await Task.WhenAll(workers);
            return new Summary(options.Mode, rounds, children, aborts, assertionAborts, hangs, otherFailures, lost, joinFailures, clock.Elapsed, firstAbort);
        }
        finally
        {
            if (cluster is not null)
            {
                await cluster.DisposeAsync();
            }
        }
    }

    private sealed record ChildResult(int ExitCode, bool Aborted, int RoundsRun, int Lost, int JoinFailures, string Log);

    private static async Task<ChildResult> RunChildAsync(Options options, string bootstrap, int firstRound, int count)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in new[]
        {
            typeof(KafkaCloseStress).Assembly.Location, "stress-child", "--mode", options.Mode, "--bootstrap", bootstrap,
            "--first-round", firstRound.ToString(CultureInfo.InvariantCulture), "--rounds", count.ToString(CultureInfo.InvariantCulture),
            "--debug", options.Debug ? "1" : "0",
        })
        {
            start.ArgumentList.Add(argument);
        }

        // A core dump per abort would fill the disk and slow every abort down.
        start.Environment["DOTNET_DbgEnableMiniDump"] = "0";
        using var process = Process.Start(start) ?? throw new InvalidOperationException("dotnet did not start");
        var log = new StringBuilder();
        var roundsRun = 0;
        var lost = 0;
        var joinFailures = 0;
        void OnLine(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (log)
            {
                if (line.StartsWith("round ", StringComparison.Ordinal) && line.Contains(" ok ", StringComparison.Ordinal))
                {
                    roundsRun++;
                    lost += Count(line, "lost ");
                    joinFailures += Count(line, "join-failures ");
                }

                log.AppendLine(line);
                if (log.Length > 4 * 1024 * 1024)
                {
                    log.Remove(0, log.Length - (2 * 1024 * 1024));
                }
            }
        }

        process.OutputDataReceived += (_, e) => OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60 + (count * 60)));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            OnLine("stress: child timed out and was killed");
        }

        process.WaitForExit(); // drains the redirected output
        string text;
        lock (log)
        {
            text = log.ToString();
        }

        // SIGABRT: 134 from a shell's view; .NET reports 128 + signal for a process killed by a signal.
        var aborted = process.ExitCode == 134 || text.Contains("*** rdkafka", StringComparison.Ordinal);
        // The round that aborted ran too, it just did not report.
        return new ChildResult(process.ExitCode, aborted, roundsRun + (aborted || process.ExitCode == HungExitCode ? 1 : 0), lost, joinFailures, text);
    }

    /// <summary>The number after <paramref name="label"/> in a child's <c>round …</c> line, or 0.</summary>
    private static int Count(string line, string label)
    {
        var at = line.IndexOf(label, StringComparison.Ordinal);
        return at >= 0 && int.TryParse(line[(at + label.Length)..].Split(' ')[0], CultureInfo.InvariantCulture, out var n) ? n : 0;
    }

    private static string Tail(string text, int lines)
    {
        var all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }

    /// <summary>Entry point of a child: runs its rounds, printing <c>round N ok lost L</c> after each.</summary>
    public static async Task<int> RunChildFromCommandLineAsync(string[] args)
    {
        var options = Options.Parse(args);
        var bootstrap = options.Bootstrap ?? throw new ArgumentException("stress-child needs --bootstrap");
        var random = new Random(options.FirstRound * 7919);
        using var loggerFactory = new StderrLoggerFactory(options.Debug ? LogLevel.Debug : LogLevel.Warning);
        await using var bus = options.Mode.StartsWith("bus", StringComparison.Ordinal) ? MessageBus.Create(BusOptions(bootstrap, options.Debug), loggerFactory) : null;
        for (var round = options.FirstRound; round < options.FirstRound + options.Rounds; round++)
        {
            var topic = $"stress-{Environment.ProcessId}-{round}";
            var current = round;
            // A close that never returns is the other face of the race: count it, do not wait for it.
            using var watchdog = new Timer(_ =>
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"round {current} HUNG"));
                Environment.Exit(HungExitCode);
            }, null, RoundLimit, Timeout.InfiniteTimeSpan);
            var lost = options.Mode switch
            {
                "bus" => await BusRoundAsync(bus!, topic, random),
                "raw" => await RawRoundAsync(bootstrap, topic, random, adapterHandlers: false, options.Debug),
                "raw-handlers" => await RawRoundAsync(bootstrap, topic, random, adapterHandlers: true, options.Debug),
                "revoke-race" => await Task.Factory.StartNew(() => RevokeRaceRound(bootstrap, topic, random, commitOnRevoke: true, options.Debug), TaskCreationOptions.LongRunning),
                "revoke-race-plain" => await Task.Factory.StartNew(() => RevokeRaceRound(bootstrap, topic, random, commitOnRevoke: false, options.Debug), TaskCreationOptions.LongRunning),
                "revoke-race-leave-first" => await Task.Factory.StartNew(() => RevokeRaceRound(bootstrap, topic, random, commitOnRevoke: true, options.Debug, leaveFirst: true), TaskCreationOptions.LongRunning),
                "bus-pair" => await BusPairRoundAsync(bus!, topic, random),
                _ => throw new ArgumentException($"unknown mode {options.Mode}"),
            };
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"round {round} ok lost {lost} join-failures {Interlocked.Exchange(ref JoinFailures, 0)}"));
        }

        return 0;
    }

    private static BusOptions BusOptions(string bootstrap, bool debug)
    {
        var options = new BusOptions { Url = "kafka://" + bootstrap.Split(',')[0] };
        foreach (var (name, value) in KafkaFixture.TestSettings())
        {
            options.Settings[name] = value;
        }

        options.Settings["bootstrap.servers"] = bootstrap;
        if (debug)
        {
            options.Settings["consumer.debug"] = "cgrp,consumer";
        }

        return options;
    }

    /// <summary>One member's life: when it joins, whether its join is cut short, how long it then stays.</summary>
    private sealed record MemberPlan(TimeSpan JoinAfter, TimeSpan? CancelJoinAfter, TimeSpan Stay);

    /// <summary>
    /// Three or four members of one group, each joining after 0-600 ms and leaving 0-1500 ms after it joined (a
    /// quarter of them give up joining after 0-300 ms); acknowledgements take 0-10 ms, so commits are in flight.
    /// Then a last member reads the topic to the end: everything published must have been delivered to someone.
    /// </summary>
    private static List<MemberPlan> Plan(Random random)
    {
        var members = random.Next(3, 5);
        var plans = new List<MemberPlan>();
        for (var i = 0; i < members; i++)
        {
            var joinAfter = TimeSpan.FromMilliseconds(random.Next(0, 4) == 0 ? 0 : random.Next(0, 600));
            TimeSpan? cancel = random.Next(0, 4) == 0 ? TimeSpan.FromMilliseconds(random.Next(0, 300)) : null;
            var stay = TimeSpan.FromMilliseconds(random.Next(0, 3) switch
            {
                0 => 0,
                1 => random.Next(0, 200),
                _ => random.Next(200, 1500),
            });
            plans.Add(new MemberPlan(joinAfter, cancel, stay));
        }

        return plans;
    }

    /// <summary>Earliest: the messages are published before the group exists.</summary>
    private static SubscriptionOptions Members(string group) => new() { Group = group, StartPosition = StartPosition.Earliest };

    private static async Task<int> BusRoundAsync(MessageBus bus, string topic, Random random)
    {
        var group = "g-" + topic;
        await bus.EnsureTopicAsync(topic);
        var batch = Enumerable.Range(0, MessagesPerRound).Select(i => OutgoingMessage.FromText($"m{i}", $"key-{i}")).ToList();
        await bus.PublishBatchAsync(topic, batch);
        var seen = new ConcurrentDictionary<string, byte>();
        var plans = Plan(random);
        var seeds = plans.Select(_ => random.Next()).ToList();
        var members = plans.Select((plan, i) => Task.Run(async () =>
        {
            var delays = new Random(seeds[i]);
            await Task.Delay(plan.JoinAfter);
            using var joining = plan.CancelJoinAfter is { } cancel ? new CancellationTokenSource(cancel) : new CancellationTokenSource();
            ISubscription subscription;
            try
            {
                subscription = await bus.SubscribeAsync(topic, async (m, _) =>
                {
                    int delay;
                    lock (delays)
                    {
                        delay = delays.Next(0, 3) == 0 ? delays.Next(0, 10) : 0;
                    }

                    if (delay > 0)
                    {
                        await Task.Delay(delay);
                    }

                    seen.TryAdd(m.Body.Length > 0 ? Encoding.UTF8.GetString(m.Body.Span) : m.MessageId, 0);
                }, Members(group), joining.Token);
            }
            catch (OperationCanceledException)
            {
                return; // the join was given up: the bus disposed the half-joined receiver
            }
            catch (BusException ex)
            {
                // Not what this reproducer looks for, but worth counting: a join that failed (and was disposed).
                Console.Error.WriteLine($"join failed: {ex.Message}");
                Interlocked.Increment(ref JoinFailures);
                return;
            }

            await Task.Delay(plan.Stay);
            await subscription.DisposeAsync();
        })).ToList();
        await Task.WhenAll(members);

        // Whatever the members left unacknowledged goes to the next member of the group.
        await using (var last = await bus.SubscribeAsync(topic, (m, _) =>
        {
            seen.TryAdd(Encoding.UTF8.GetString(m.Body.Span), 0);
            return default;
        }, Members(group)))
        {
            var deadline = Stopwatch.StartNew();
            while (seen.Count < MessagesPerRound && deadline.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(50);
            }
        }

        return MessagesPerRound - seen.Count;
    }

    private static async Task<int> RawRoundAsync(string bootstrap, string topic, Random random, bool adapterHandlers, bool debug)
    {
        var group = "g-" + topic;
        using (var producer = new ProducerBuilder<byte[]?, byte[]>(new ProducerConfig { BootstrapServers = bootstrap }).Build())
        {
            for (var i = 0; i < MessagesPerRound; i++)
            {
                producer.Produce(topic, new Message<byte[]?, byte[]> { Key = Encoding.UTF8.GetBytes($"key-{i}"), Value = Encoding.UTF8.GetBytes($"m{i}") });
            }

            producer.Flush(TimeSpan.FromSeconds(10));
        }

        var seen = new ConcurrentDictionary<string, byte>();
        var plans = Plan(random);
        var members = plans.Select(plan => Task.Run(async () =>
        {
            await Task.Delay(plan.JoinAfter);
            // The raw consumer has no join to give up: a cancelled join is a member that closes right after subscribing.
            var stay = plan.CancelJoinAfter ?? plan.Stay + TimeSpan.FromMilliseconds(300);
            await Task.Factory.StartNew(() => RawMember(bootstrap, topic, group, stay, adapterHandlers, debug, seen), TaskCreationOptions.LongRunning);
        })).ToList();
        await Task.WhenAll(members);
        await Task.Factory.StartNew(() => RawMember(bootstrap, topic, group, TimeSpan.FromSeconds(20), adapterHandlers, debug, seen, stopWhenAllSeen: true), TaskCreationOptions.LongRunning);
        return MessagesPerRound - seen.Count;
    }

    /// <summary>
    /// The state the abort needs, built on purpose with raw consumers: B stops polling, A leaves, B's next heartbeat
    /// learns of the rebalance and queues a revocation for B's application; then B closes. librdkafka's close rejoins
    /// (join state init, so it unassigns without waiting for the application), while B's revoke handler, served by
    /// Close(), commits after a random 0-3 ms: a commit that reaches the group after it was marked terminated is
    /// what the assertion trips on; one that comes later waits forever (a hung close). Without the commit
    /// (<paramref name="commitOnRevoke"/> false, mode <c>revoke-race-plain</c>) the same state is harmless. Returns 0
    /// (nothing is counted as lost here). <paramref name="leaveFirst"/> (mode <c>revoke-race-leave-first</c>) closes B the
    /// way <see cref="Internal.KafkaReceiver"/> does since the fix: unsubscribe and serve the revocation, then Close().
    /// </summary>
    private static bool revokePathWarm;

    private static int RevokeRaceRound(string bootstrap, string topic, Random random, bool commitOnRevoke, bool debug, bool leaveFirst = false)
    {
        using (var producer = new ProducerBuilder<byte[]?, byte[]>(new ProducerConfig { BootstrapServers = bootstrap }).Build())
        {
            for (var i = 0; i < MessagesPerRound; i++)
            {
                producer.Produce(topic, new Message<byte[]?, byte[]> { Key = Encoding.UTF8.GetBytes($"key-{i}"), Value = Encoding.UTF8.GetBytes($"m{i}") });
            }

            producer.Flush(TimeSpan.FromSeconds(10));
        }

        var group = "g-" + topic;
        var delayTicks = (long)(random.NextDouble() * 3 * Stopwatch.Frequency / 1000);
        IConsumer<byte[]?, byte[]?> Member(bool withCommit)
        {
            var config = new ConsumerConfig
            {
                BootstrapServers = bootstrap,
                GroupId = group,
                EnableAutoCommit = true,
                EnableAutoOffsetStore = false,
                AutoOffsetReset = AutoOffsetReset.Earliest,
                SessionTimeoutMs = 6000,
                HeartbeatIntervalMs = 300,
            };
            if (debug)
            {
                config.Debug = "cgrp,consumer";
            }

            var builder = new ConsumerBuilder<byte[]?, byte[]?>(config)
                .SetLogHandler((_, m) => Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.ffffff} {m.Facility} {m.Message}"));
            if (withCommit)
            {
                builder.SetPartitionsRevokedHandler((consumer, _) =>
                {
                    if (debug)
                    {
                        Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.ffffff} revoke handler: committing in {delayTicks * 1000.0 / Stopwatch.Frequency:0.000} ms");
                    }

                    var clock = Stopwatch.StartNew();
                    while (clock.ElapsedTicks < delayTicks)
                    {
                        Thread.SpinWait(20);
                    }

                    CommitQuietly(consumer);
                });
            }

            return builder.Build();
        }

        if (!revokePathWarm)
        {
            // .NET's rebalance callback takes milliseconds the first time (JIT), longer than librdkafka needs to
            // terminate: warm it with one ordinary close (revocation served while the close waits for it), so the
            // racing commit can land anywhere around the termination.
            using var warm = Member(commitOnRevoke);
            warm.Subscribe(topic);
            var joined = Stopwatch.StartNew();
            while (warm.Assignment.Count == 0 && joined.Elapsed < TimeSpan.FromSeconds(15))
            {
                warm.Consume(TimeSpan.FromMilliseconds(10));
            }

            warm.Close();
            revokePathWarm = true;
        }

        using var a = Member(withCommit: false);
        using var b = Member(commitOnRevoke);
        a.Subscribe(topic);
        b.Subscribe(topic);
        var until = Stopwatch.StartNew();
        var stored = 0;
        while (until.Elapsed < TimeSpan.FromSeconds(15) && (a.Assignment.Count == 0 || b.Assignment.Count == 0 || stored < 20))
        {
            a.Consume(TimeSpan.FromMilliseconds(10));
            if (b.Consume(TimeSpan.FromMilliseconds(10)) is { Message: not null } result)
            {
                b.StoreOffset(result);
                stored++;
            }
        }

        // B stops polling; A leaves; B's next heartbeat brings the rebalance and a revocation is queued. Heartbeats go
        // out when librdkafka's main loop wakes, up to a second apart when nothing else happens.
        a.Close();
        Thread.Sleep(random.Next(1200, 1700));
        if (leaveFirst)
        {
            // What KafkaReceiver.LeaveGroup does before Close(): unsubscribe, and poll until the revocation was served.
            b.Unsubscribe();
            var leaving = Stopwatch.StartNew();
            while (b.Assignment.Count > 0 && leaving.Elapsed < TimeSpan.FromSeconds(5))
            {
                b.Consume(TimeSpan.FromMilliseconds(50));
            }
        }

        b.Close();
        return 0;
    }

    /// <summary>
    /// The conformance case's shape, many times: two members share the topic, the first is disposed, and the second
    /// 0-1200 ms later, so the second's close meets the rebalance the first one's leaving started at varying points.
    /// </summary>
    private static async Task<int> BusPairRoundAsync(MessageBus bus, string topic, Random random)
    {
        var group = "g-" + topic;
        await bus.EnsureTopicAsync(topic);
        var seen = new ConcurrentDictionary<string, byte>();
        ValueTask Handle(ReceivedMessage m, CancellationToken _)
        {
            seen.TryAdd(Encoding.UTF8.GetString(m.Body.Span), 0);
            return default;
        }

        var first = await bus.SubscribeAsync(topic, Handle, Members(group));
        var second = await bus.SubscribeAsync(topic, Handle, Members(group));
        await bus.PublishBatchAsync(topic, Enumerable.Range(0, MessagesPerRound).Select(i => OutgoingMessage.FromText($"m{i}", $"key-{i}")).ToList());
        var deadline = Stopwatch.StartNew();
        while (seen.Count < MessagesPerRound && deadline.Elapsed < TimeSpan.FromSeconds(20))
        {
            await Task.Delay(10);
        }

        await first.DisposeAsync();
        await Task.Delay(random.Next(0, 1200));
        await second.DisposeAsync();
        return MessagesPerRound - seen.Count;
    }

    private static void RawMember(string bootstrap, string topic, string group, TimeSpan stay, bool adapterHandlers, bool debug, ConcurrentDictionary<string, byte> seen, bool stopWhenAllSeen = false)
    {
        var config = new ConsumerConfig
        {
            BootstrapServers = bootstrap,
            GroupId = group,
            EnableAutoCommit = true,
            EnableAutoOffsetStore = false,
            AutoCommitIntervalMs = 1000,
            AutoOffsetReset = AutoOffsetReset.Earliest,
            SessionTimeoutMs = 6000,
            HeartbeatIntervalMs = 1000,
        };
        if (debug)
        {
            config.Debug = "cgrp,consumer";
        }

        var builder = new ConsumerBuilder<byte[]?, byte[]?>(config)
            .SetLogHandler((_, m) => Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} {m.Level} {m.Facility} {m.Message}"));
        if (adapterHandlers)
        {
            builder.SetPartitionsAssignedHandler((consumer, assigned) =>
                    assigned.Count == 0 ? [] : consumer.Committed(assigned, TimeSpan.FromSeconds(10))
                        .Select(c => c.Offset.Value >= 0 ? c : new TopicPartitionOffset(c.TopicPartition, Offset.Beginning)).ToList())
                .SetPartitionsRevokedHandler((consumer, _) => CommitQuietly(consumer));
        }

        using var member = builder.Build();
        member.Subscribe(topic);
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < stay && !(stopWhenAllSeen && seen.Count >= MessagesPerRound))
        {
            ConsumeResult<byte[]?, byte[]?>? result;
            try
            {
                result = member.Consume(TimeSpan.FromMilliseconds(50));
            }
            catch (ConsumeException)
            {
                continue;
            }

            if (result?.Message?.Value is { } value)
            {
                seen.TryAdd(Encoding.UTF8.GetString(value), 0);
                try
                {
                    member.StoreOffset(result);
                }
                catch (KafkaException)
                {
                    // Revoked meanwhile.
                }
            }
        }

        if (adapterHandlers)
        {
            CommitQuietly(member);
        }

        member.Close();
    }

    private static void CommitQuietly(IConsumer<byte[]?, byte[]?> consumer)
    {
        try
        {
            consumer.Commit();
        }
        catch (KafkaException)
        {
            // Nothing stored since the last commit, or no longer a member.
        }
    }

    /// <summary>Command line of the parent and of a child.</summary>
    public sealed record Options(string Mode, int Rounds, int RoundsPerChild, int Parallel, string? Bootstrap, int FirstRound, bool Debug)
    {
        public static Options Parse(string[] args)
        {
            var options = new Options("bus", 100, 10, 1, null, 0, false);
            for (var i = 0; i + 1 < args.Length; i += 2)
            {
                var value = args[i + 1];
                options = args[i] switch
                {
                    "--mode" => options with { Mode = value },
                    "--rounds" => options with { Rounds = int.Parse(value, CultureInfo.InvariantCulture) },
                    "--rounds-per-child" => options with { RoundsPerChild = int.Parse(value, CultureInfo.InvariantCulture) },
                    "--parallel" => options with { Parallel = int.Parse(value, CultureInfo.InvariantCulture) },
                    "--bootstrap" => options with { Bootstrap = value },
                    "--first-round" => options with { FirstRound = int.Parse(value, CultureInfo.InvariantCulture) },
                    "--debug" => options with { Debug = value is "1" or "true" },
                    _ => throw new ArgumentException($"unknown option {args[i]}"),
                };
            }

            return options;
        }
    }

    /// <summary>Writes log lines straight to stderr, which the parent keeps even when the process aborts.</summary>
    private sealed class StderrLoggerFactory(LogLevel minimum) : ILoggerFactory, ILogger
    {
        public void AddProvider(ILoggerProvider provider)
        {
        }

        public ILogger CreateLogger(string categoryName) => this;

        public void Dispose()
        {
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (IsEnabled(logLevel))
            {
                Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss.fff} [{Environment.CurrentManagedThreadId}] {logLevel} {eventId.Id}: {formatter(state, exception)}{(exception is null ? "" : " | " + exception.GetType().Name + ": " + exception.Message)}");
            }
        }
    }
}
