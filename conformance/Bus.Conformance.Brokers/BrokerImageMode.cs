namespace Bus.Conformance.Brokers;

/// <summary>Which container images a fixture may use; read from <c>BUS_TEST_IMAGES</c>.</summary>
public enum BrokerImageMode
{
    /// <summary>
    /// The official image when it is already present locally, else the locally built <c>local/NAME:bookworm</c> image
    /// (<c>BUS_TEST_IMAGES=auto</c>, the default). Never pulls.
    /// </summary>
    Auto,

    /// <summary>Always the official image, pulled when missing (<c>BUS_TEST_IMAGES=official</c>).</summary>
    Official,

    /// <summary>Only locally built images or other local routes; never pulls (<c>BUS_TEST_IMAGES=local</c>).</summary>
    Local,
}
