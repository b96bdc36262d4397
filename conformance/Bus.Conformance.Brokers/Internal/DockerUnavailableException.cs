namespace Bus.Conformance.Brokers.Internal;

/// <summary>The Docker daemon did not answer; turned into a <see cref="BrokerUnavailableException"/> by the caller.</summary>
internal sealed class DockerUnavailableException(string message, Exception? innerException) : Exception(message, innerException);
