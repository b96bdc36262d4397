namespace Bus.RabbitMq.Tests;

/// <summary>What the tests that stop, freeze or restart the broker share.</summary>
internal static class Recovery
{
    /// <summary>
    /// Publishes, retrying the transient failures of a client that is reconnecting, for up to
    /// <paramref name="within"/> (a minute by default).
    /// </summary>
    public static async Task PublishUntilRecoveredAsync(MessageBus bus, string topic, OutgoingMessage message, TimeSpan? within = null)
    {
        var deadline = DateTime.UtcNow + (within ?? TimeSpan.FromSeconds(60));
        while (true)
        {
            try
            {
                await bus.PublishAsync(topic, message);
                return;
            }
            catch (BusException ex) when (ex.IsTransient && DateTime.UtcNow < deadline)
            {
                await Task.Delay(250);
            }
        }
    }
}
