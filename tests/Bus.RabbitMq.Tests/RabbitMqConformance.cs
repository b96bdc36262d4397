using Bus.Conformance.Xunit;
using Xunit;

namespace Bus.RabbitMq.Tests;

/// <summary>The whole catalogue against RabbitMQ with the adapter's defaults (quorum queues).</summary>
public sealed class RabbitMqConformance(RabbitMqFixture fixture) : ConformanceTests(fixture), IClassFixture<RabbitMqFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(RabbitMqTransportFactory.DeclaredCapabilities);
}

/// <summary>The whole catalogue against RabbitMQ with classic group queues (<c>queue-type=classic</c>).</summary>
public sealed class RabbitMqClassicConformance(RabbitMqClassicFixture fixture) : ConformanceTests(fixture), IClassFixture<RabbitMqClassicFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(RabbitMqTransportFactory.WithClassicQueues(RabbitMqTransportFactory.DeclaredCapabilities));
}
