using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Bus.RabbitMq.Internal;
using Xunit;

namespace Bus.RabbitMq.Tests;

/// <summary>
/// The tls-ca check on its own: given the chain the system built (as SslStream does, for server authentication),
/// which certificates it accepts. No broker needed.
/// </summary>
public sealed class RabbitMqTrustTests
{
    private static readonly Oid ServerAuthentication = new("1.3.6.1.5.5.7.3.1");
    private static readonly Oid ClientAuthentication = new("1.3.6.1.5.5.7.3.2");

    [Fact]
    public void A_server_certificate_from_the_named_ca_is_accepted()
    {
        using var ca = Authority("CN=tls-ca test");
        using var leaf = Leaf(ca, ServerAuthentication, DateTimeOffset.UtcNow.AddHours(1));
        Assert.True(Check(leaf, ca));
    }

    [Fact]
    public void A_certificate_from_the_named_ca_that_is_not_for_servers_is_refused()
    {
        // A client certificate of the same private CA (mutual TLS) must not pass as the broker.
        using var ca = Authority("CN=tls-ca test");
        using var leaf = Leaf(ca, ClientAuthentication, DateTimeOffset.UtcNow.AddHours(1));
        Assert.False(Check(leaf, ca));
    }

    [Fact]
    public void An_expired_certificate_from_the_named_ca_is_refused()
    {
        using var ca = Authority("CN=tls-ca test");
        using var leaf = Leaf(ca, ServerAuthentication, DateTimeOffset.UtcNow.AddMinutes(-1));
        Assert.False(Check(leaf, ca));
    }

    [Fact]
    public void A_certificate_from_another_ca_with_the_same_name_is_refused()
    {
        using var ca = Authority("CN=tls-ca test");
        using var impostor = Authority("CN=tls-ca test");
        using var leaf = Leaf(impostor, ServerAuthentication, DateTimeOffset.UtcNow.AddHours(1));
        Assert.False(Check(leaf, ca, sentAlong: impostor));
    }

    [Fact]
    public void A_host_name_mismatch_is_refused_whatever_the_chain()
    {
        using var ca = Authority("CN=tls-ca test");
        using var leaf = Leaf(ca, ServerAuthentication, DateTimeOffset.UtcNow.AddHours(1));
        using var chain = SystemChain(leaf, null);
        Assert.False(RabbitMqEndpoint.IsTrusted(leaf, chain, SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateChainErrors, [ca]));
    }

    private static bool Check(X509Certificate2 leaf, X509Certificate2 trusted, X509Certificate2? sentAlong = null)
    {
        using var chain = SystemChain(leaf, sentAlong);
        var errors = chain.ChainStatus.Length == 0 ? SslPolicyErrors.None : SslPolicyErrors.RemoteCertificateChainErrors;
        Assert.Equal(SslPolicyErrors.RemoteCertificateChainErrors, errors); // nobody else trusts these CAs
        using var copy = X509CertificateLoader.LoadCertificate(trusted.RawData); // the public part, as read from a PEM file
        return RabbitMqEndpoint.IsTrusted(leaf, chain, errors, [copy]);
    }

    /// <summary>The chain as SslStream builds it for a client: system trust, server authentication.</summary>
    private static X509Chain SystemChain(X509Certificate2 leaf, X509Certificate2? sentAlong)
    {
        var chain = new X509Chain();
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        chain.ChainPolicy.ApplicationPolicy.Add(ServerAuthentication);
        if (sentAlong is not null)
        {
            chain.ChainPolicy.ExtraStore.Add(sentAlong);
        }

        chain.Build(leaf);
        return chain;
    }

    private static X509Certificate2 Authority(string name)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest(name, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddHours(-2), DateTimeOffset.UtcNow.AddHours(2));
    }

    private static X509Certificate2 Leaf(X509Certificate2 issuer, Oid usage, DateTimeOffset notAfter)
    {
        using var key = RSA.Create(2048);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([usage], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(issuer, true, false));
        using var signed = request.Create(issuer, DateTimeOffset.UtcNow.AddHours(-1), notAfter, RandomNumberGenerator.GetBytes(8));
        return signed.CopyWithPrivateKey(key);
    }
}
