using Microsoft.Extensions.Options;

namespace Bus.Internal;

/// <summary>Validates <see cref="BusOptions"/> at startup (<c>ValidateOnStart</c>) and when a bus is built.</summary>
internal sealed class BusOptionsValidation : IValidateOptions<BusOptions>
{
    public ValidateOptionsResult Validate(string? name, BusOptions options)
    {
        try
        {
            ThrowIfInvalid(options);
            BusTransports.Resolve(BusUri.Parse(options.Url));
            return ValidateOptionsResult.Success;
        }
        catch (BusConfigurationException ex)
        {
            return ValidateOptionsResult.Fail(ex.Message);
        }
    }

    public static void ThrowIfInvalid(BusOptions options)
    {
        if (options.ConnectTimeout <= TimeSpan.Zero)
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.ConnectTimeout)} must be positive; it is {options.ConnectTimeout}.");
        }

        if (options.OperationTimeout <= TimeSpan.Zero)
        {
            throw new BusConfigurationException($"{nameof(BusOptions)}.{nameof(BusOptions.OperationTimeout)} must be positive; it is {options.OperationTimeout}.");
        }
    }
}
