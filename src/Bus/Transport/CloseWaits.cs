namespace Bus.Transport;

/// <summary>
/// How long the steps of closing (a consumer, a channel, the connection) wait for a broker that may not answer, shared
/// by the closes of one transport. A frozen or cut-off broker answers nothing, and client libraries wait their own
/// timeouts for it (RabbitMQ.Client 20 s per reply, librdkafka's commit 60 s, the AWS SDK 30 s per attempt), so a
/// shutdown that waited for each step took from 15 s to minutes. Each step waits at most <see cref="Budget"/>; once one
/// went unanswered the broker is taken to be silent and later steps wait only <see cref="SilentWait"/>, until
/// <see cref="Answered"/> says it answered again. A step given up on is not undone: what it sent stays sent, and a
/// broker that wakes up carries it out.
/// </summary>
public sealed class CloseWaits
{
    private int _silent;

    /// <summary>Creates the waits of one transport.</summary>
    /// <param name="budget">The longest a step waits while the broker answers (for most, <see cref="TransportContext.CloseTimeout"/>).</param>
    /// <param name="silentWait">How long a step waits once one went unanswered.</param>
    public CloseWaits(TimeSpan budget, TimeSpan silentWait)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(budget, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(silentWait, TimeSpan.Zero);
        Budget = budget;
        SilentWait = silentWait;
    }

    /// <summary>The longest a step waits while the broker answers.</summary>
    public TimeSpan Budget { get; }

    /// <summary>How long a step waits once one went unanswered, until the broker answers again.</summary>
    public TimeSpan SilentWait { get; }

    /// <summary>True after a step went unanswered, until <see cref="Answered"/>.</summary>
    public bool BrokerSilent => Volatile.Read(ref _silent) != 0;

    /// <summary>How long the next step waits: <see cref="Budget"/>, or <see cref="SilentWait"/> while the broker is silent.</summary>
    public TimeSpan Current => BrokerSilent ? SilentWait : Budget;

    /// <summary>A step went unanswered. Returns true when the broker was not yet known to be silent (log it once).</summary>
    public bool Unanswered() => Interlocked.Exchange(ref _silent, 1) == 0;

    /// <summary>
    /// The broker answered (a poll, an assignment, a recovered connection): steps wait <see cref="Budget"/> again. Reads
    /// before it writes, so calling it after every poll costs no write to memory the consumers share.
    /// </summary>
    public void Answered()
    {
        if (Volatile.Read(ref _silent) != 0)
        {
            Volatile.Write(ref _silent, 0);
        }
    }

    /// <summary>
    /// Waits for <paramref name="step"/> at most <see cref="Current"/>. True if it completed (its failure, if any, is the
    /// caller's to observe); false if not, which counts as <see cref="Unanswered"/> (the step's failure is observed when
    /// it ends, so it is not reported as unobserved).
    /// </summary>
    /// <param name="step">The close step, already started.</param>
    public async Task<bool> WaitAsync(Task step)
    {
        ArgumentNullException.ThrowIfNull(step);
        await step.WaitAsync(Current).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        if (step.IsCompleted)
        {
            return true;
        }

        Unanswered();
        _ = step.ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        return false;
    }
}
