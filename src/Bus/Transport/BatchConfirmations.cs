namespace Bus.Transport;

/// <summary>
/// Which messages of a batch publish the backend has confirmed, by their index in the batch. Core reads it only when
/// the batch fails, to tell the caller which messages to publish again (<see cref="PublishBatchException.UnconfirmedMessages"/>).
/// A transport marks a message once its confirmation has arrived, at the latest before its publish call completes
/// with a failure; a batch that completes successfully counts as confirmed whole, so a transport need not mark
/// anything on success. Marks only ever go from unconfirmed to confirmed, so a snapshot taken while a confirmation is
/// still on its way errs towards publishing again (a duplicate), never towards a loss. Thread-safe.
/// </summary>
public sealed class BatchConfirmations
{
    private readonly bool[] _confirmed;

    /// <summary>Creates the record for a batch of <paramref name="count"/> messages, none confirmed.</summary>
    /// <param name="count">The batch's size.</param>
    public BatchConfirmations(int count)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        _confirmed = new bool[count];
    }

    /// <summary>The batch's size.</summary>
    public int Count => _confirmed.Length;

    /// <summary>Marks the message at <paramref name="index"/> confirmed: the backend has stored it durably.</summary>
    /// <param name="index">The message's index in the batch.</param>
    public void Confirm(int index) => Volatile.Write(ref _confirmed[index], true);

    /// <summary>Marks every message whose publish task completed successfully, for a transport that started one task per message.</summary>
    /// <param name="pending">The batch's publish tasks, by index; a <see langword="null"/> entry was never started.</param>
    public void ConfirmCompleted(IReadOnlyList<Task?> pending)
    {
        ArgumentNullException.ThrowIfNull(pending);
        for (var i = 0; i < pending.Count && i < _confirmed.Length; i++)
        {
            if (pending[i] is { IsCompletedSuccessfully: true })
            {
                Confirm(i);
            }
        }
    }

    /// <summary>Whether the message at <paramref name="index"/> is marked confirmed.</summary>
    /// <param name="index">The message's index in the batch.</param>
    public bool IsConfirmed(int index) => Volatile.Read(ref _confirmed[index]);
}
