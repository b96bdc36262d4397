namespace Bus.Conformance.Brokers;

/// <summary>The brokers Bus has adapters for, and so the brokers the tests may need to start.</summary>
/// <remarks>
/// The upper-case name of a value (<c>RABBITMQ</c>, <c>MQTT</c>, ...) is the one used in environment variables such as
/// <c>BUS_TEST_RABBITMQ_URL</c>; the lower-case name is the one used in <c>BUS_TEST_EXPECTED_BACKENDS</c>.
/// </remarks>
public enum BrokerKind
{
    /// <summary>RabbitMQ, spoken to over AMQP 0-9-1.</summary>
    RabbitMq,

    /// <summary>Redis streams.</summary>
    Redis,

    /// <summary>NATS with JetStream.</summary>
    Nats,

    /// <summary>An MQTT broker (Mosquitto).</summary>
    Mqtt,

    /// <summary>Apache Kafka (or a broker speaking its protocol).</summary>
    Kafka,

    /// <summary>Amazon SQS (or an emulator speaking its protocol).</summary>
    Sqs,

    /// <summary>Apache Pulsar.</summary>
    Pulsar,
}
