using Bus.Conformance;
using Bus.Conformance.Xunit;
using Bus.Memory;
using Xunit;

namespace Bus.Tests.Conformance;

/// <summary>The embedded backend: nothing to start.</summary>
public sealed class MemoryFixture : ConformanceFixture
{
    protected override Task<ConformanceBackend> StartAsync()
        => Task.FromResult(new ConformanceBackend { Name = "memory", Target = "embedded (in process)", Url = "memory://" });
}

/// <summary>The whole catalogue against the in-memory reference backend.</summary>
public sealed class MemoryConformance(MemoryFixture fixture) : ConformanceTests(fixture), IClassFixture<MemoryFixture>
{
    public static TheoryData<string> Cases => ApplicableCases(MemoryTransportFactory.DeclaredCapabilities);
}
