using Amazon.SQS;
using Amazon.SQS.Model;
using Bus.Transport;
using Microsoft.Extensions.Logging;

namespace Bus.Sqs.Internal;

/// <summary>
/// Acknowledgements of one queue, coalesced by core's <see cref="SettlementBatcher{T}"/> into DeleteMessageBatch
/// calls of up to 10 receipts (SQS's limit), a few in flight at once. An ack is done when it is queued, as on the other
/// backends: a delete that fails is logged, and SQS delivers the message again after its visibility timeout
/// (at-least-once). Waiting for the reply instead cost every message a thread-pool continuation of its own (1.4 work
/// items per message end to end against 0.17 for a raw receive loop).
/// </summary>
internal sealed class ReceiptBatcher : IAsyncDisposable
{
    /// <summary>
    /// How long a partial batch waits for more receipts while others are being deleted: the acks of one received
    /// batch arrive within about a millisecond of each other, and a DeleteMessageBatch round trip costs more than that.
    /// </summary>
    private static readonly TimeSpan Linger = TimeSpan.FromMilliseconds(2);

    private readonly SqsTransport _transport;
    private readonly IAmazonSQS _client;
    private readonly string _queueUrl;
    private readonly string _queueName;
    private readonly ILogger _logger;
    private readonly SettlementBatcher<string> _batcher;
    private readonly CancellationTokenSource _closing = new(); // cancelled the transport's close wait after closing begins

    /// <param name="transport">The transport: its SQS client, logger and close wait.</param>
    /// <param name="queueUrl">The queue.</param>
    /// <param name="maxConcurrentDeletes">Batches in flight at once.</param>
    public ReceiptBatcher(SqsTransport transport, string queueUrl, int maxConcurrentDeletes)
    {
        _transport = transport;
        _client = transport.Client;
        _queueUrl = queueUrl;
        _queueName = SqsNames.NameFromUrl(queueUrl);
        _logger = transport.Logger;
        _batcher = new SettlementBatcher<string>(DeleteAsync, new SettlementBatcherOptions { MaxBatchSize = 10, MaxConcurrentFlushes = maxConcurrentDeletes, Linger = Linger });
    }

    /// <summary>Queues the message of <paramref name="receipt"/> for deletion; closing sends what is queued.</summary>
    public void Delete(string receipt)
    {
        try
        {
            _batcher.Add(receipt);
        }
        catch (ObjectDisposedException)
        {
            // The receiver is closed: the message comes back after its visibility timeout.
        }
    }

    /// <summary>
    /// Sends what is queued and waits for it, at most the close wait: a server that does not answer would hold each
    /// delete for the SDK's timeout (30 s) per attempt. Deletes cut off fail as any failed delete does (logged; the
    /// message comes back after its visibility timeout).
    /// </summary>
    public async ValueTask DisposeAsync()
    {
        _closing.CancelAfter(_transport.CloseWaits.Current);
        await _batcher.DisposeAsync().ConfigureAwait(false);
        _closing.Dispose();
    }

    private async ValueTask<IReadOnlyList<Exception?>?> DeleteAsync(IReadOnlyList<string> receipts)
    {
        var entries = new List<DeleteMessageBatchRequestEntry>(receipts.Count);
        for (var i = 0; i < receipts.Count; i++)
        {
            entries.Add(new DeleteMessageBatchRequestEntry { Id = EntryIds.Of(i), ReceiptHandle = receipts[i] });
        }

        DeleteMessageBatchResponse response;
        try
        {
            response = await _client.DeleteMessageBatchAsync(new DeleteMessageBatchRequest { QueueUrl = _queueUrl, Entries = entries }, _closing.Token).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            if (_closing.IsCancellationRequested)
            {
                _transport.CloseWaits.Unanswered(); // cut off by closing: the server did not answer within the close wait
            }

            Log.DeleteFailed(_logger, receipts.Count, _queueName, ex);
            return null;
        }

        foreach (var error in response.Failed ?? [])
        {
            if (SqsErrors.IsStaleReceipt(error.Code))
            {
                Log.StaleReceipt(_logger, _queueName, error.Code);
            }
            else
            {
                Log.DeleteEntryFailed(_logger, _queueName, error.Code, error.Message);
            }
        }

        return null;
    }
}
