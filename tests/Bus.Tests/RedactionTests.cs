using Bus.Transport;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Xunit;

namespace Bus.Tests;

public class RedactionTests
{
    [Theory]
    [InlineData("amqp://guest:guest-secret@rabbit:5672/vhost", "amqp://guest:***@rabbit:5672/vhost")]
    [InlineData("kafka://b1:9092?acks=all&sasl.password=top-secret", "kafka://b1:9092/?acks=all&sasl.password=***")]
    [InlineData("kafka://b1:9092?acks=all&sasl.password=top&secret&x=y", "kafka://b1:9092/?acks=all&sasl.password=***&***&***")] // '&' not escaped: pieces of it
    [InlineData("kafka://b1:9092?sasl.password=top#secret", "kafka://b1:9092/?sasl.password=***#***")]
    [InlineData("memory://", "memory://")]
    [InlineData("redis://:only-a-secret@cache:6380/1", "redis://:***@cache:6380/1")]
    [InlineData("redis://only-a-secret@cache:6380", "redis://***@cache:6380/")] // Redis reads user info without a colon as the password
    [InlineData("redis://cache:6379/2", "redis://cache:6379/2")]
    public void Passwords_and_secret_query_values_are_replaced(string url, string expected)
        => Assert.Equal(expected, UriRedaction.Redact(new Uri(url)));

    [Theory]
    [InlineData("guest:s3cret@localhost", "guest:***@localhost")]
    [InlineData("//guest:s3cret@localhost", "//guest:***@localhost")]
    [InlineData("rabbitmq://guest:s3cr@t@bad host", "rabbitmq://guest:***@bad host")]
    [InlineData("sqs://bad host?region=eu&secretkey=abc&def", "sqs://bad host?region=eu&secretkey=***&***")]
    [InlineData("redis//cache?password=abc#x", "redis//cache?password=***#***")] // '#' not escaped: a piece of it
    [InlineData("redis//cache?db=1#x", "redis//cache?db=1#x")]
    [InlineData("not a uri", "not a uri")]
    [InlineData("redis://s3cret@bad host", "redis://***@bad host")]
    [InlineData("kafka://h:bad?sasl.password=p@ssw0rd", "kafka://h:bad?sasl.password=***")]
    [InlineData("?password=x@y", "?password=***")]
    [InlineData("", "")]
    public void Unparsable_text_loses_its_password_and_secret_query_values(string text, string expected)
        => Assert.Equal(expected, UriRedaction.RedactText(text));

    [Theory]
    [InlineData("guest:s3cret-pw@localhost")]
    [InlineData("//guest:s3cret-pw@localhost")]
    [InlineData("rabbitmq://guest:s3cret-pw@bad host:5672")]
    [InlineData("sqs://bad host?secretkey=s3cret-pw")]
    [InlineData("guest:s3cret-pw@localhost?endpoint=http://x")]
    [InlineData("kafka://h:bad?sasl.password=p@s3cret-pw")]
    [InlineData("redis://s3cret-pw@bad host:6379")]
    public void A_bad_url_is_reported_without_its_secret(string url)
    {
        var error = Assert.ThrowsAny<BusException>(() => MessageBus.Create(url));
        Assert.DoesNotContain("s3cret-pw", error.ToString(), StringComparison.Ordinal);
    }

    [Property(MaxTest = 300)]
    public Property No_password_survives_redaction()
    {
        var passwords = ArbMap.Default.GeneratorFor<NonEmptyString>()
            .Select(s => s.Get)
            .Where(p => p.Length >= 4 && !p.Any(char.IsControl) && !p.Any(char.IsSurrogate))
            .ToArbitrary();
        return Prop.ForAll(passwords, password =>
        {
            var url = $"amqp://user:{Uri.EscapeDataString(password)}@broker-host:5672";
            var redacted = UriRedaction.Redact(new Uri(url));
            return !redacted.Contains(password, StringComparison.Ordinal)
                && !redacted.Contains(Uri.EscapeDataString(password), StringComparison.Ordinal)
                && redacted.Contains("broker-host", StringComparison.Ordinal);
        });
    }

    [Property]
    public bool Conservative_topic_names_accept_exactly_letters_digits_dot_underscore_dash(NonEmptyString name)
    {
        var text = name.Get;
        var legal = text.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-') && text is not "." and not "..";
        return (TopicNames.ValidateConservative(text) is null) == legal;
    }

    [Property]
    public bool Size_estimate_is_at_least_the_body(byte[] body, string? key)
    {
        var message = new OutgoingMessage(body ?? []) { Key = key, MessageId = "id" };
        return MessageSize.Estimate(message) >= message.Body.Length;
    }

    [Fact]
    public void Error_text_loses_the_secrets_of_the_url_and_the_pieces_after_them()
    {
        var options = new BusOptions { Url = "kafka://user:p%40ss%20word@b1:9092?acks=all&sasl.password=abc&cd&region=us-east-1#frag" };
        options.Settings["token"] = "abcdef";
        var secrets = UriRedaction.SecretsIn(options);

        Assert.Equal(
            "No such configuration property: \"***\" nor '***' nor '***' nor '***'; *** *** ***, region us-east-1, cd in xcdx",
            UriRedaction.Scrub("No such configuration property: \"cd\" nor 'cd' nor 'us-east-1' nor 'frag'; p@ss word p%40ss%20word abcdef, region us-east-1, cd in xcdx", secrets));
    }

    [Fact]
    public void A_short_secret_value_is_scrubbed_only_where_it_stands_quoted()
    {
        var secrets = UriRedaction.SecretsIn(new BusOptions { Url = "sqs://127.0.0.1?token=p" });
        Assert.Equal("please set 'token' to '***'", UriRedaction.Scrub("please set 'token' to 'p'", secrets));
    }
}
