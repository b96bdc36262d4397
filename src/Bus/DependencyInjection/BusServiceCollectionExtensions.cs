using Bus;
using Bus.Internal;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers <see cref="IMessageBus"/> with Microsoft.Extensions.DependencyInjection.</summary>
public static class BusServiceCollectionExtensions
{
    /// <summary>
    /// Adds a singleton <see cref="IMessageBus"/> configured in code. Options are validated at startup when the host
    /// validates on start (and always when the bus is first resolved). Calling it again only adds configuration.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Sets <see cref="BusOptions"/>, for example the URL.</param>
    public static IServiceCollection AddBus(this IServiceCollection services, Action<BusOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        AddCore(services).Configure(configure);
        return services;
    }

    /// <summary>
    /// Adds a singleton <see cref="IMessageBus"/> bound to a configuration section, e.g.
    /// <c>configuration.GetSection("Bus")</c> holding <c>{ "Url": "kafka://broker:9092", "Settings": { ... } }</c>.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="section">The section to bind to <see cref="BusOptions"/>.</param>
    public static IServiceCollection AddBus(this IServiceCollection services, IConfiguration section)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(section);
        AddCore(services).Bind(section);
        return services;
    }

    private static OptionsBuilder<BusOptions> AddCore(IServiceCollection services)
    {
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<BusOptions>, BusOptionsValidation>());
        services.TryAddSingleton<IMessageBus>(provider => MessageBus.Create(
            provider.GetRequiredService<IOptions<BusOptions>>().Value,
            provider.GetService<ILoggerFactory>() ?? NullLoggerFactory.Instance));
        return services.AddOptions<BusOptions>().ValidateOnStart();
    }
}
