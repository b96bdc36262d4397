using Bus.Conformance.Brokers;
using MQTTnet;
using MQTTnet.Formatter;
using MQTTnet.Protocol;
using Xunit.Abstractions;

namespace Bus.Brokers.Tests;

[Collection(MqttCollection.Name)]
public sealed class MqttTests(MqttBroker broker, ITestOutputHelper output) : BrokerSmokeTests(broker, output)
{
    protected override async Task RoundTripAsync(BrokerFixture fixture, string payload, CancellationToken cancellationToken)
    {
        var factory = new MqttClientFactory();
        using var subscriber = factory.CreateMqttClient();
        using var publisher = factory.CreateMqttClient();
        var topic = $"bus/smoke/{Guid.NewGuid():N}";
        var received = new TaskCompletionSource<MqttApplicationMessage>(TaskCreationOptions.RunContinuationsAsynchronously);
        subscriber.ApplicationMessageReceivedAsync += e =>
        {
            received.TrySetResult(e.ApplicationMessage);
            return Task.CompletedTask;
        };

        await subscriber.ConnectAsync(Options(fixture, "subscriber"), cancellationToken);
        var subscription = await subscriber.SubscribeAsync(
            factory.CreateSubscribeOptionsBuilder().WithTopicFilter(topic, MqttQualityOfServiceLevel.AtLeastOnce).Build(),
            cancellationToken);
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, Assert.Single(subscription.Items).ResultCode);

        await publisher.ConnectAsync(Options(fixture, "publisher"), cancellationToken);
        var published = await publisher.PublishAsync(
            new MqttApplicationMessageBuilder().WithTopic(topic).WithPayload(payload).WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(),
            cancellationToken);
        Assert.True(published.IsSuccess, $"PUBACK reason {published.ReasonCode}");

        var message = await received.Task.WaitAsync(cancellationToken);
        Assert.Equal(payload, message.ConvertPayloadToString());
        Assert.Equal(MqttQualityOfServiceLevel.AtLeastOnce, message.QualityOfServiceLevel);

        await publisher.DisconnectAsync(cancellationToken: cancellationToken);
        await subscriber.DisconnectAsync(cancellationToken: cancellationToken);
    }

    private static MqttClientOptions Options(BrokerFixture fixture, string role) =>
        new MqttClientOptionsBuilder()
            .WithTcpServer(fixture.ConnectionUri.Host, fixture.ConnectionUri.Port)
            .WithClientId($"bus-smoke-{role}-{Guid.NewGuid():N}")
            .WithProtocolVersion(MqttProtocolVersion.V500)
            .WithTimeout(TimeSpan.FromSeconds(5))
            .Build();
}
