namespace Bus.Conformance.Brokers;

/// <summary>How to run one broker container: what <see cref="BrokerBackend.DescribeContainer"/> returns.</summary>
public sealed class ContainerSpec
{
    /// <summary>The image, e.g. <c>local/rabbitmq:bookworm</c> or <c>rabbitmq:3.13</c>.</summary>
    public required string Image { get; init; }

    /// <summary>The command (arguments to the image's entry point); empty means the image's own. Default: empty.</summary>
    public IReadOnlyList<string> Command { get; init; } = [];

    /// <summary>Environment variables for the container. Default: none.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    /// <summary>Files copied into the container before it starts, by absolute path. Default: none.</summary>
    public IReadOnlyDictionary<string, byte[]> Files { get; init; } = new Dictionary<string, byte[]>();

    /// <summary>
    /// Host port to container port. Host ports are bound on 127.0.0.1 only, and stay the same across a restart.
    /// </summary>
    public required IReadOnlyDictionary<int, int> PortBindings { get; init; }
}
