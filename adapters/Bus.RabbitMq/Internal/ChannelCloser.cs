using Bus.Transport;
using Microsoft.Extensions.Logging;
using RabbitMQ.Client;
using RabbitMQ.Client.Exceptions;

namespace Bus.RabbitMq.Internal;

/// <summary>
/// Closes the channels of one connection in bounded time. A graceful close waits for the broker's replies
/// (basic.cancel-ok, channel.close-ok), which a frozen or partitioned broker never sends; RabbitMQ.Client would wait its
/// continuation timeout (20 s) for each, so a bus with two consumers took 90 s to dispose against a frozen broker.
/// The client does not stop waiting for a reply when the caller's token is cancelled (only its continuation timeout
/// ends the wait), so the close sets the channel's continuation timeout to the budget instead.
/// </summary>
/// <remarks>
/// Each close waits as long as <paramref name="waits"/> says: the close budget, and not at all once one close went
/// unanswered, until the connection recovers. A close that does not wait still sends channel.close, so a broker that
/// wakes up releases the channel and returns its unacknowledged deliveries to their queue, exactly as after a graceful
/// close.
/// </remarks>
internal sealed class ChannelCloser(CloseWaits waits, ILogger logger)
{
    /// <summary>How long an abandoned close waits: enough for the client to take its own lock and send channel.close.</summary>
    private static readonly TimeSpan AbandonWait = TimeSpan.FromMilliseconds(100);

    /// <summary>How long closes wait for the broker; the connection's recovery counts as its answer.</summary>
    public CloseWaits Waits => waits;

    /// <summary>
    /// Cancels <paramref name="consumerTag"/> (when given) and closes <paramref name="channel"/>, waiting at most
    /// the close budget for the broker; never throws.
    /// </summary>
    public async Task CloseAsync(IChannel channel, string? consumerTag, string what)
    {
        if (channel.IsOpen && !waits.BrokerSilent)
        {
            channel.ContinuationTimeout = waits.Budget;
            try
            {
                if (!string.IsNullOrEmpty(consumerTag))
                {
                    await channel.BasicCancelAsync(consumerTag, noWait: false).ConfigureAwait(false);
                }

                if (channel.IsOpen)
                {
                    await channel.CloseAsync(Constants.ReplySuccess, "Goodbye", abort: false).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is TimeoutException or OperationCanceledException)
            {
                // The continuation timeout cancels the wait (TaskCanceledException), or sets a TimeoutException.
                if (waits.Unanswered())
                {
                    Log.BrokerSilentOnClose(logger, what, waits.Budget);
                }
            }
            catch (Exception ex) when (ex is AlreadyClosedException or OperationInterruptedException or ObjectDisposedException)
            {
                // The channel or its connection is gone already, so the broker has released what it held.
            }
            catch (Exception ex)
            {
                Log.ChannelCloseFailed(logger, what, ex);
            }
        }

        if (channel.IsOpen)
        {
            await AbandonAsync(channel).ConfigureAwait(false);
        }

        if (channel.IsOpen)
        {
            // Disposing an open channel blocks for a close the broker does not answer; the connection's close
            // releases it instead.
            return;
        }

        try
        {
            channel.Dispose();
        }
        catch (Exception ex) when (ex is AlreadyClosedException or OperationInterruptedException or ObjectDisposedException)
        {
            // Nothing left to release.
        }
    }

    /// <summary>Sends channel.close and marks the channel closed on the client without waiting for close-ok.</summary>
    private static async Task AbandonAsync(IChannel channel)
    {
        channel.ContinuationTimeout = AbandonWait;
        try
        {
            await channel.CloseAsync(Constants.ReplySuccess, "Goodbye", abort: true).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is TimeoutException or OperationCanceledException or AlreadyClosedException or OperationInterruptedException or ObjectDisposedException)
        {
            // Expected: the broker did not answer within the brief wait (abort swallows most of these already).
        }
    }
}
