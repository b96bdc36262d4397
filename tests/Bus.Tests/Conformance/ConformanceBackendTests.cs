using Bus.Conformance;
using Xunit;

namespace Bus.Tests.Conformance;

public class ConformanceBackendTests
{
    /// <summary>
    /// The capabilities that decide which cases are unsupported are those a bus of the backend's URL and settings
    /// declares, as the cases read them, not the factory's static declaration (settings can change them).
    /// </summary>
    [Fact]
    public void Capabilities_are_what_a_bus_of_the_urls_settings_declares()
    {
        var backend = new ConformanceBackend { Name = "memory", Target = "embedded", Url = "memory://?max-message-size=1000" };
        Assert.Equal(1000, backend.Capabilities.MaxMessageSize);
        Assert.NotEqual(1000, Bus.Memory.MemoryTransportFactory.DeclaredCapabilities.MaxMessageSize);
    }
}
