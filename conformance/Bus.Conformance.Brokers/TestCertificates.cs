using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Bus.Conformance.Brokers;

/// <summary>
/// A private certificate authority and a server certificate it signed, made in memory for TLS tests against a broker
/// (nothing is installed anywhere): the CA's certificate is what a client is told to trust, and the server's
/// certificate and key are what the broker is configured with.
/// </summary>
public sealed class TestCertificates
{
    private TestCertificates(string caPem, string serverPem, string serverKeyPem)
    {
        CaPem = caPem;
        ServerPem = serverPem;
        ServerKeyPem = serverKeyPem;
    }

    /// <summary>The CA's certificate, PEM.</summary>
    public string CaPem { get; }

    /// <summary>The server's certificate, PEM.</summary>
    public string ServerPem { get; }

    /// <summary>The server's private key, PKCS#8 PEM (unencrypted).</summary>
    public string ServerKeyPem { get; }

    /// <summary>
    /// Makes a CA and a server certificate valid for an hour, for <c>localhost</c> and 127.0.0.1 plus
    /// <paramref name="dnsNames"/>.
    /// </summary>
    /// <param name="dnsNames">More names the server certificate covers.</param>
    /// <returns>The certificates.</returns>
    public static TestCertificates Create(params string[] dnsNames)
    {
        var now = DateTimeOffset.UtcNow;
        using var caKey = RSA.Create(2048);
        var caRequest = new CertificateRequest("CN=Bus test CA", caKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddHours(1));

        using var serverKey = RSA.Create(2048);
        var serverRequest = new CertificateRequest("CN=localhost", serverKey, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        foreach (var name in dnsNames)
        {
            names.AddDnsName(name);
        }

        serverRequest.CertificateExtensions.Add(names.Build());
        serverRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        serverRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyEncipherment, true));
        serverRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false)); // server authentication
        serverRequest.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        var serial = new byte[16];
        RandomNumberGenerator.Fill(serial);
        serial[0] &= 0x7F; // positive
        using var server = serverRequest.Create(ca, now.AddMinutes(-5), now.AddMinutes(59), serial);
        return new TestCertificates(ca.ExportCertificatePem(), server.ExportCertificatePem(), serverKey.ExportPkcs8PrivateKeyPem());
    }

    /// <summary>Writes the CA's certificate to a new temporary file and returns its path (for a client's trust setting).</summary>
    /// <returns>The file's path; the caller deletes it.</returns>
    public string WriteCaFile()
    {
        var path = Path.Combine(Path.GetTempPath(), $"bus-test-ca-{Guid.NewGuid():N}.pem");
        File.WriteAllText(path, CaPem);
        return path;
    }
}
