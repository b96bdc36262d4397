using System.Collections.Concurrent;
using System.Reflection;
using Bus.Memory;
using Bus.Transport;

namespace Bus;

/// <summary>
/// The registry of backends by URI scheme. The in-memory backend is built in. An adapter is found without any
/// registration code when its assembly is referenced: the registry loads the conventional assembly for a known
/// scheme (for example <c>Bus.RabbitMq</c> for <c>rabbitmq://</c>) and reads its <see cref="BusTransportAttribute"/>.
/// </summary>
public static class BusTransports
{
    private static readonly ConcurrentDictionary<string, IBusTransportFactory> Factories = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Known schemes and the adapter assembly that serves each.</summary>
    private static readonly Dictionary<string, string> ConventionalAssemblies = new(StringComparer.OrdinalIgnoreCase)
    {
        ["rabbitmq"] = "Bus.RabbitMq",
        ["amqp"] = "Bus.RabbitMq",
        ["amqps"] = "Bus.RabbitMq",
        ["redis"] = "Bus.Redis",
        ["rediss"] = "Bus.Redis",
        ["kafka"] = "Bus.Kafka",
        ["sqs"] = "Bus.Sqs",
        ["sqs-fifo"] = "Bus.Sqs",
        ["nats"] = "Bus.Nats",
        ["pulsar"] = "Bus.Pulsar",
        ["mqtt"] = "Bus.Mqtt",
        ["mqtts"] = "Bus.Mqtt",
    };

    static BusTransports() => Register(new MemoryTransportFactory());

    /// <summary>Every scheme a backend is known for, with the assembly that provides it.</summary>
    public static IReadOnlyDictionary<string, string> KnownSchemes
    {
        get
        {
            var all = new SortedDictionary<string, string>(StringComparer.OrdinalIgnoreCase) { ["memory"] = "Bus (built in)" };
            foreach (var (scheme, assembly) in ConventionalAssemblies)
            {
                all[scheme] = assembly;
            }

            return all;
        }
    }

    /// <summary>Registers (or replaces) a backend for its schemes.</summary>
    /// <param name="factory">The backend's factory.</param>
    public static void Register(IBusTransportFactory factory)
    {
        ArgumentNullException.ThrowIfNull(factory);
        foreach (var scheme in factory.Schemes)
        {
            Factories[scheme] = factory;
        }
    }

    /// <summary>The factory for a scheme, loading its conventional adapter assembly if needed; <see langword="null"/> if none is available.</summary>
    /// <param name="scheme">A URI scheme such as <c>kafka</c>.</param>
    public static IBusTransportFactory? Find(string scheme)
    {
        ArgumentNullException.ThrowIfNull(scheme);
        if (Factories.TryGetValue(scheme, out var factory))
        {
            return factory;
        }

        if (ConventionalAssemblies.TryGetValue(scheme, out var assemblyName) && TryLoad(assemblyName) is { } assembly)
        {
            foreach (var attribute in assembly.GetCustomAttributes<BusTransportAttribute>())
            {
                if (Activator.CreateInstance(attribute.FactoryType) is IBusTransportFactory found)
                {
                    Register(found);
                }
            }
        }

        return Factories.TryGetValue(scheme, out factory) ? factory : null;
    }

    /// <summary>The factory for the scheme of <paramref name="url"/> (which may list several hosts), or <see langword="null"/>.</summary>
    /// <param name="url">A connection URI.</param>
    public static IBusTransportFactory? FindForUrl(string url)
    {
        ArgumentNullException.ThrowIfNull(url);
        var scheme = Internal.BusUri.SchemeOf(url);
        return scheme.Length == 0 ? null : Find(scheme);
    }

    internal static IBusTransportFactory Resolve(Uri uri)
    {
        var scheme = uri.Scheme;
        return Find(scheme) ?? throw new BusConfigurationException(
            ConventionalAssemblies.TryGetValue(scheme, out var assembly)
                ? $"{nameof(BusOptions)}.{nameof(BusOptions.Url)}: scheme '{scheme}' needs the {assembly} package; reference it from the application."
                : $"{nameof(BusOptions)}.{nameof(BusOptions.Url)}: unknown scheme '{scheme}'. Known schemes: {string.Join(", ", KnownSchemes.Keys)}.");
    }

    private static Assembly? TryLoad(string name)
    {
        try
        {
            return Assembly.Load(new AssemblyName(name));
        }
        catch (FileNotFoundException)
        {
            return null;
        }
        catch (FileLoadException)
        {
            return null;
        }
    }
}
