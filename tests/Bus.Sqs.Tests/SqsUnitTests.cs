using Amazon.SQS.Model;
using Bus.Sqs.Internal;
using Bus.Transport;
using Microsoft.Extensions.Logging.Abstractions;
using Xunit;

namespace Bus.Sqs.Tests;

/// <summary>No emulator needed: URI parsing, names, and the message envelope.</summary>
public sealed class SqsUnitTests
{
    private static SqsSettings Parse(string url, Action<BusOptions>? configure = null)
    {
        var options = new BusOptions { Url = url };
        configure?.Invoke(options);
        return SqsSettings.Parse(new TransportContext(new Uri(url), options, NullLoggerFactory.Instance));
    }

    [Fact]
    public void Region_host_means_aws_with_the_standard_credential_chain()
    {
        var settings = Parse("sqs://eu-west-1");
        Assert.Equal("eu-west-1", settings.Region);
        Assert.Null(settings.Endpoint);
        Assert.Null(settings.AccessKey);
        Assert.Null(settings.SecretKey);
        Assert.Equal("AWS SQS in eu-west-1", settings.Describe());
    }

    [Fact]
    public void Host_and_port_mean_an_endpoint_override_with_uri_credentials()
    {
        var settings = Parse("sqs://AKID:se%2Fcret@127.0.0.1:4566?region=us-west-2");
        Assert.Equal(new Uri("http://127.0.0.1:4566"), settings.Endpoint);
        Assert.Equal("us-west-2", settings.Region);
        Assert.Equal("AKID", settings.AccessKey);
        Assert.Equal("se/cret", settings.SecretKey);
        Assert.DoesNotContain("cret", settings.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public void Tls_setting_and_explicit_endpoint_select_https()
    {
        Assert.Equal("https", Parse("sqs://localhost:4566?tls=true").Endpoint!.Scheme);
        var explicitEndpoint = Parse("sqs://ap-south-1?endpoint=https://vpce-1.sqs.ap-south-1.vpce.amazonaws.com");
        Assert.Equal("https://vpce-1.sqs.ap-south-1.vpce.amazonaws.com/", explicitEndpoint.Endpoint!.ToString());
        Assert.Equal("ap-south-1", explicitEndpoint.Region);
        Assert.Equal("us-east-1", Parse("sqs://localhost:4566").Region);
    }

    [Fact]
    public void Settings_come_from_the_query_or_the_options()
    {
        var settings = Parse("sqs://us-east-1?wait-seconds=2", o => o.Settings["group-cache-ms"] = "250");
        Assert.Equal(2, settings.WaitSeconds);
        Assert.Equal(TimeSpan.FromMilliseconds(250), settings.GroupCacheTime);
    }

    [Theory]
    [InlineData("sqs://us-east-1?wait-seconds=21", "wait-seconds")]
    [InlineData("sqs://eu-west-1?region=EU", "EU")]
    [InlineData("sqs://localhost:1?region=nowhere", "nowhere")]
    [InlineData("sqs://localhost:1?endpoint=ftp://x", "endpoint")]
    public void Invalid_settings_name_the_problem(string url, string named)
    {
        var error = Assert.Throws<BusConfigurationException>(() => Parse(url));
        Assert.Contains(named, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Errors_never_show_the_secret()
    {
        const string Secret = "s3cr3t-Pa55word-zq";
        var error = Assert.Throws<BusConfigurationException>(() => Parse($"sqs://AKID:{Secret}@localhost:1?wait-seconds=99"));
        Assert.DoesNotContain(Secret, error.ToString(), StringComparison.Ordinal);
        Assert.Contains("AKID:***@", error.Message, StringComparison.Ordinal);
        var bus = MessageBus.Create($"sqs://AKID:{Secret}@127.0.0.1:4566");
        Assert.DoesNotContain(Secret, bus.RedactedUrl, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("orders", false, "orders_billing", "orders-dlq")]
    [InlineData("orders.fifo", true, "orders_billing.fifo", "orders-dlq.fifo")]
    public void Fifo_is_chosen_by_the_topic_name(string topic, bool fifo, string queue, string deadLetterTopic)
    {
        Assert.Equal(fifo, SqsNames.IsFifo(topic));
        Assert.Equal(queue, SqsNames.QueueName(topic, "billing"));
        Assert.Equal(deadLetterTopic, SqsNames.DeadLetterTopic(topic));
        Assert.Equal("billing", SqsNames.GroupOf(topic, queue));
        // A standard topic and the FIFO topic of the same stem never see each other's groups.
        Assert.Null(SqsNames.GroupOf(fifo ? "orders" : "orders.fifo", queue));
    }

    [Theory]
    [InlineData("a_b")]
    [InlineData("a.b")]
    [InlineData(".fifo")]
    [InlineData("ü")]
    public void Topic_names_outside_the_sqs_rules_are_rejected(string topic) => Assert.NotNull(SqsNames.ValidateTopic(topic));

    [Fact]
    public void Fifo_ids_are_kept_when_legal_and_hashed_otherwise()
    {
        Assert.Equal("key-1", SqsNames.FifoId("key-1"));
        var hashed = SqsNames.FifoId("k-ü");
        Assert.StartsWith("h-", hashed, StringComparison.Ordinal);
        Assert.Equal(hashed, SqsNames.FifoId("k-ü"));
        Assert.True(hashed.Length <= 128);
    }

    public static TheoryData<byte[], bool> Bodies => new()
    {
        { [], false },
        { "plain text"u8.ToArray(), true },
        { "ünïcødé ✓\ttab\nnewline"u8.ToArray(), true },
        { Enumerable.Range(0, 256).Select(i => (byte)i).ToArray(), false },
        { "emoji 😀"u8.ToArray(), false },
        { "cr\r\n"u8.ToArray(), false },
        { [0xC3], false },
        { [0x61, 0xED, 0xA0, 0x80], false },           // an encoded surrogate: not UTF-8
        { [0x61, 0xC0, 0x80], false },                 // overlong NUL
        { [0x61, 0xC2, 0x85], false },                 // U+0085, a C1 control
        { [0x61, 0x7F], false },                       // DEL
        { [0x61, 0xEF, 0xBF, 0xBE], false },           // U+FFFE, not an XML character
        { [0x61, 0xEF, 0xBF, 0xBD, 0xEE, 0x80, 0x80], true }, // U+FFFD and U+E000, the edges that are allowed
    };

    [Theory]
    [MemberData(nameof(Bodies))]
    public void Envelope_round_trips_every_field(byte[] body, bool asText)
    {
        var message = new OutgoingMessage(body)
        {
            MessageId = "id-1",
            Key = "k-ü",
            CorrelationId = "corr",
            ContentType = "application/x-test",
            ReplyTo = "replies",
        };
        message.Headers["h-ascii"] = "v";
        message.Headers["h-utf8"] = "ünïcødé ✓ 😀 \"quoted\" <tag> &";
        var (text, attribute, base64) = SqsEnvelope.Encode(message);
        Assert.Equal(!asText && body.Length > 0, base64);
        Assert.True(attribute.All(c => c < 0x80), "the attribute is pure ASCII");
        Assert.Equal(System.Text.Encoding.UTF8.GetByteCount(text) + "bus".Length + "String".Length + attribute.Length, SqsEnvelope.WireSize(message));

        var sqs = new Message
        {
            MessageId = "sqs-id",
            Body = text,
            ReceiptHandle = "r",
            MessageAttributes = new() { ["bus"] = SqsEnvelope.Attribute(attribute) },
            Attributes = new() { ["ApproximateReceiveCount"] = "2", ["SentTimestamp"] = "1700000000000" },
        };
        var received = SqsEnvelope.Decode("t", sqs, 7, this);
        Assert.Equal(body, received.Body.ToArray());
        Assert.Equal("id-1", received.MessageId);
        Assert.Equal("k-ü", received.Key);
        Assert.Equal("corr", received.CorrelationId);
        Assert.Equal("application/x-test", received.ContentType);
        Assert.Equal("replies", received.ReplyTo);
        Assert.Equal("v", received.Headers["h-ascii"]);
        Assert.Equal("ünïcødé ✓ 😀 \"quoted\" <tag> &", received.Headers["h-utf8"]);
        Assert.Equal(2, received.DeliveryCount);
        Assert.Equal(DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000), received.Timestamp);
        Assert.Equal(7, received.DeliveryTag);
    }

    [Fact]
    public void A_message_without_the_bus_attribute_is_read_as_text_with_string_attributes_as_headers()
    {
        var sqs = new Message
        {
            MessageId = "raw-1",
            Body = "hello",
            MessageAttributes = new() { ["color"] = new MessageAttributeValue { DataType = "String", StringValue = "blue" } },
        };
        var received = SqsEnvelope.Decode("t", sqs, 1, this);
        Assert.Equal("hello", received.GetText());
        Assert.Equal("raw-1", received.MessageId);
        Assert.Equal("blue", received.Headers["color"]);
        Assert.Equal(1, received.DeliveryCount);
    }

    [Fact]
    public void Declared_limit_is_the_largest_binary_body_that_fits_262144_bytes()
    {
        var random = new byte[SqsEnvelope.MaxBodySize];
        new Random(1).NextBytes(random);
        var message = new OutgoingMessage(random) { MessageId = Guid.CreateVersion7().ToString("N") };
        Assert.True(SqsEnvelope.WireSize(message) <= SqsEnvelope.WireLimit);
        Assert.Equal(SqsEnvelope.MaxBodySize, SqsTransportFactory.DeclaredCapabilities.MaxMessageSize);
        // Headers count too: a full-size body plus large headers goes over.
        message.Headers["big"] = new string('x', 2_000);
        Assert.True(SqsEnvelope.WireSize(message) > SqsEnvelope.WireLimit);
    }

    [Fact]
    public void A_misspelt_setting_fails_at_creation_and_the_message_lists_what_sqs_reads()
    {
        var error = Assert.Throws<BusConfigurationException>(() => MessageBus.Create("sqs://AKID:pw-secret@127.0.0.1:4566?regoin=eu-west-1"));
        Assert.Contains("'regoin'", error.Message, StringComparison.Ordinal);
        Assert.Contains("region", error.Message.Split("It reads:")[1], StringComparison.Ordinal);
        Assert.DoesNotContain("pw-secret", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Every setting the adapter documents is read while the bus is created, whatever the scheme: one that is not fails as unknown.</summary>
    [Theory]
    [InlineData("sqs://AKID:pw@127.0.0.1:4566?region=us-east-1&endpoint=http%3A%2F%2F127.0.0.1%3A4566&tls=false&session-token=t&wait-seconds=5&group-cache-ms=1000&max-receive-count=10&max-retries=3&request-timeout-ms=30000&receive-concurrency=1&fifo=true&deduplication=message-id")]
    [InlineData("sqs-fifo://AKID:pw@127.0.0.1:4566?region=us-east-1&fifo=true")]
    public async Task Every_documented_setting_is_accepted(string url)
    {
        await using var bus = MessageBus.Create(url);
        Assert.Equal("sqs", bus.Backend);
    }

    /// <summary>
    /// Core skips measuring a message when body plus three bytes per other character is under the limit; on SQS the
    /// body travels as base64 and non-ASCII text in the attribute as \uXXXX (six bytes a character), so that skip let
    /// a message through that SQS refuses. Refused before anything is sent (no server here).
    /// </summary>
    [Fact]
    public async Task A_message_over_the_limit_only_once_encoded_is_refused_before_sending()
    {
        const int OutsideBody = 32 + 1 + 600; // the id, the header's name and its value
        var body = new byte[SqsEnvelope.MaxBodySize - (3 * OutsideBody)];
        new Random(5).NextBytes(body);
        var message = new OutgoingMessage(body) { MessageId = new string('a', 32) };
        message.Headers["h"] = new string('\u00e9', 600);
        Assert.True(SqsEnvelope.WireSize(message) > SqsEnvelope.WireLimit);

        await using var bus = MessageBus.Create("sqs://AKID:secret@127.0.0.1:1");
        await Assert.ThrowsAsync<MessageTooLargeException>(async () => await bus.PublishAsync("t", message));
        await Assert.ThrowsAsync<MessageTooLargeException>(async () => await bus.PublishBatchAsync("t", [OutgoingMessage.FromText("first"), message]));
    }
}
