using System.CommandLine;
using Bus.Cli.Commands;

var root = new RootCommand("Bus: one messaging contract over Kafka, RabbitMQ, SQS, Redis Streams, NATS, Pulsar, MQTT and memory.")
{
    DemoCommand.Create(),
    ConformanceCommand.Create(),
    SendCommand.Create(),
    ConsumeCommand.Create(),
    BackendsCommand.Create(),
};

return await root.Parse(args).InvokeAsync();
