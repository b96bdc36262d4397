using Bus.Conformance.Xunit;
using Xunit;

namespace Bus.Redis.Tests;

/// <summary>The whole catalogue against a real Redis server (see <see cref="RedisFixture"/> for which one).</summary>
public sealed class RedisConformance(RedisFixture fixture) : ConformanceTests(fixture), IClassFixture<RedisFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(RedisTransportFactory.DeclaredCapabilities);
}
