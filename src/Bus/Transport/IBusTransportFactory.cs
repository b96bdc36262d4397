namespace Bus.Transport;

/// <summary>
/// Creates a backend's <see cref="MessageTransport"/> for the URI schemes it owns. An adapter assembly names its
/// factory with <see cref="BusTransportAttribute"/> so that referencing the package is enough to use its scheme.
/// </summary>
public interface IBusTransportFactory
{
    /// <summary>The backend's short name, e.g. <c>rabbitmq</c>.</summary>
    string Backend { get; }

    /// <summary>The URI schemes it owns, lower case, e.g. <c>rabbitmq</c>, <c>amqp</c>, <c>amqps</c>.</summary>
    IReadOnlyList<string> Schemes { get; }

    /// <summary>What the backend declares it can do (the same value its transports report).</summary>
    BackendCapabilities Capabilities { get; }

    /// <summary>
    /// Creates a transport. Must not do I/O (core calls <see cref="MessageTransport.ConnectAsync"/>). Read every setting
    /// the backend takes here, whatever the URI (with <see cref="TransportContext.GetSetting(string, string?)"/>, before
    /// combining it with anything): core then rejects the settings that were given and never asked for, as typos.
    /// </summary>
    /// <param name="context">The parsed URI, options and logging.</param>
    /// <exception cref="BusConfigurationException">The URI or a setting is invalid for this backend.</exception>
    MessageTransport Create(TransportContext context);
}

/// <summary>Names an adapter assembly's <see cref="IBusTransportFactory"/>.</summary>
/// <param name="factoryType">A public type implementing <see cref="IBusTransportFactory"/> with a parameterless constructor.</param>
[AttributeUsage(AttributeTargets.Assembly, AllowMultiple = true)]
public sealed class BusTransportAttribute(Type factoryType) : Attribute
{
    /// <summary>The factory type.</summary>
    public Type FactoryType { get; } = factoryType;
}
