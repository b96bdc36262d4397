using System.Globalization;
using System.Threading.Channels;
using Amazon.SQS;
using Amazon.SQS.Model;
using Microsoft.Extensions.Logging;

namespace Bus.Sqs.Internal;

/// <summary>
/// Acknowledgements of one queue, coalesced into DeleteMessageBatch calls of up to 10 receipts; each ack completes
/// when its batch is confirmed. A few batches may be in flight at once.
/// </summary>
internal sealed class ReceiptBatcher : IAsyncDisposable
{
    private const int Flushers = 4;

    private readonly IAmazonSQS _client;
    private readonly string _queueUrl;
    private readonly ILogger _logger;
    private readonly Channel<(string Receipt, TaskCompletionSource Done)> _pending = Channel.CreateUnbounded<(string, TaskCompletionSource)>(new UnboundedChannelOptions { SingleWriter = false, SingleReader = false });
    private readonly Task[] _flushers;

    public ReceiptBatcher(IAmazonSQS client, string queueUrl, ILogger logger)
    {
        _client = client;
        _queueUrl = queueUrl;
        _logger = logger;
        _flushers = new Task[Flushers];
        for (var i = 0; i < Flushers; i++)
        {
            _flushers[i] = Task.Run(FlushLoopAsync);
        }
    }

    public Task DeleteAsync(string receipt, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (!_pending.Writer.TryWrite((receipt, done)))
        {
            // Closed: the receiver is gone; the message comes back after its visibility timeout.
            return Task.CompletedTask;
        }

        return done.Task.WaitAsync(cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        _pending.Writer.TryComplete();
        await Task.WhenAll(_flushers).ConfigureAwait(false);
    }

    private async Task FlushLoopAsync()
    {
        var batch = new List<(string Receipt, TaskCompletionSource Done)>(10);
        while (await _pending.Reader.WaitToReadAsync().ConfigureAwait(false))
        {
            batch.Clear();
            while (batch.Count < 10 && _pending.Reader.TryRead(out var item))
            {
                batch.Add(item);
            }

            if (batch.Count == 0)
            {
                continue;
            }

            try
            {
                var response = await _client.DeleteMessageBatchAsync(new DeleteMessageBatchRequest
                {
                    QueueUrl = _queueUrl,
                    Entries = batch.Select((b, i) => new DeleteMessageBatchRequestEntry { Id = i.ToString(CultureInfo.InvariantCulture), ReceiptHandle = b.Receipt }).ToList(),
                }, CancellationToken.None).ConfigureAwait(false);
                var failed = new Dictionary<string, BatchResultErrorEntry>(StringComparer.Ordinal);
                foreach (var error in response.Failed ?? [])
                {
                    failed[error.Id] = error;
                }

                for (var i = 0; i < batch.Count; i++)
                {
                    if (failed.TryGetValue(i.ToString(CultureInfo.InvariantCulture), out var error) && !SqsErrors.IsStaleReceipt(error.Code))
                    {
                        batch[i].Done.TrySetException(new BusException($"sqs: ack on queue {SqsNames.NameFromUrl(_queueUrl)} failed: {error.Code}: {error.Message}", BusFailureReason.BrokerError, SqsTransportFactory.BackendName, null, error.SenderFault != true));
                    }
                    else
                    {
                        if (error is not null)
                        {
                            Log.StaleReceipt(_logger, SqsNames.NameFromUrl(_queueUrl), error.Code);
                        }

                        batch[i].Done.TrySetResult();
                    }
                }
            }
            catch (Exception ex)
            {
                var wrapped = SqsErrors.Wrap(ex, $"ack on queue {SqsNames.NameFromUrl(_queueUrl)}", null);
                foreach (var item in batch)
                {
                    item.Done.TrySetException(wrapped);
                }
            }
        }
    }
}
