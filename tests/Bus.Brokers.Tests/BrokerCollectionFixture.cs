using Bus.Conformance.Brokers;

namespace Bus.Brokers.Tests;

/// <summary>
/// One broker per xunit collection: started once before the collection's first test, removed after its last (also
/// when tests fail). Different collections, so different brokers, run in parallel.
/// </summary>
public abstract class BrokerCollectionFixture(BrokerKind kind) : IAsyncLifetime
{
    private BrokerAvailability? _availability;

    public BrokerAvailability Availability => _availability ?? throw new InvalidOperationException("not initialised");

    public async Task InitializeAsync() => _availability = await BrokerAvailability.StartAsync(kind);

    public async Task DisposeAsync()
    {
        if (_availability is not null)
        {
            await _availability.DisposeAsync();
        }
    }
}

public sealed class RabbitMqBroker() : BrokerCollectionFixture(BrokerKind.RabbitMq);

public sealed class RedisBroker() : BrokerCollectionFixture(BrokerKind.Redis);

public sealed class NatsBroker() : BrokerCollectionFixture(BrokerKind.Nats);

public sealed class MqttBroker() : BrokerCollectionFixture(BrokerKind.Mqtt);

[CollectionDefinition(Name)]
public sealed class RabbitMqCollection : ICollectionFixture<RabbitMqBroker>
{
    public const string Name = "rabbitmq";
}

[CollectionDefinition(Name)]
public sealed class RedisCollection : ICollectionFixture<RedisBroker>
{
    public const string Name = "redis";
}

[CollectionDefinition(Name)]
public sealed class NatsCollection : ICollectionFixture<NatsBroker>
{
    public const string Name = "nats";
}

[CollectionDefinition(Name)]
public sealed class MqttCollection : ICollectionFixture<MqttBroker>
{
    public const string Name = "mqtt";
}
