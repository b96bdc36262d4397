using System.Globalization;
using Bus.Conformance.Brokers.Internal.Probes;

namespace Bus.Conformance.Brokers.Backends;

/// <summary>
/// SQS, emulated by ElasticMQ (<c>softwaremill/elasticmq-native:1.6.1</c>, which speaks the JSON protocol of AWSSDK.SQS 4)
/// where images can be pulled. <see cref="BrokerFixture.ConnectionUri"/> is the service URL, <c>http://127.0.0.1:PORT</c>.
/// </summary>
/// <remarks>
/// No local image: on the project's machines SQS is the fauxqs process (npm). That route belongs in an override of
/// <see cref="BrokerBackend.CreateLocalFixtureAsync"/> in this class.
/// </remarks>
internal sealed class SqsBackend : BrokerBackend
{
    public override BrokerKind Kind => BrokerKind.Sqs;

    public override string DisplayName => "SQS";

    public override string? OfficialImage => "softwaremill/elasticmq-native:1.6.1";

    public override TimeSpan StartupTimeout => TimeSpan.FromSeconds(60);

    protected internal override IReadOnlyDictionary<string, int> ContainerPorts { get; } = new Dictionary<string, int> { ["sqs"] = 9324 };

    protected internal override Uri CreateConnectionUri(string host, IReadOnlyDictionary<string, int> hostPorts) =>
        new(string.Create(CultureInfo.InvariantCulture, $"http://{host}:{hostPorts["sqs"]}"));

    protected internal override async Task<string> ProbeAsync(Uri connectionUri, IReadOnlyDictionary<string, Uri> endpoints, CancellationToken cancellationToken)
    {
        // The query protocol's ListQueues answers without credentials on the emulators; any answer below 500 means the
        // HTTP service is up.
        await HttpProbe.GetStatusAsync(new Uri(connectionUri, "/?Action=ListQueues"), cancellationToken).ConfigureAwait(false);
        return "SQS API answered";
    }
}
