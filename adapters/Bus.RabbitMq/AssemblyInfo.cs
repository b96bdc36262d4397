using Bus.RabbitMq;
using Bus.Transport;

[assembly: BusTransport(typeof(RabbitMqTransportFactory))]
