using System.CommandLine;
using Microsoft.Extensions.Configuration;

namespace Bus.Cli.Commands;

/// <summary>Options every command shares, and how the bus options are found.</summary>
internal static class CommonOptions
{
    /// <summary>
    /// The connection URI. Without it: the <c>Bus</c> section of ./appsettings.json, then the BUS__URL environment
    /// variable, then <c>memory://</c>.
    /// </summary>
    public static Option<string?> Url() => new("--url", "-u")
    {
        Description = "Connection URI (memory://, rabbitmq://…, redis://…, kafka://…, sqs://…). Default: appsettings.json section Bus, env BUS__URL, else memory://",
    };

    public static BusOptions Resolve(string? url)
    {
        var configuration = new ConfigurationBuilder()
            .SetBasePath(Directory.GetCurrentDirectory())
            .AddJsonFile("appsettings.json", optional: true)
            .AddEnvironmentVariables()
            .Build();
        var options = new BusOptions();
        configuration.GetSection(BusOptions.SectionName).Bind(options);
        if (url is not null)
        {
            // Given but empty (an unset $BUS_URL): an error, not a silent fall-back to the private memory:// default.
            options.Url = string.IsNullOrWhiteSpace(url)
                ? throw new BusConfigurationException("--url is empty (an unset variable?); give a URI such as memory://name or rabbitmq://host.")
                : url;
        }

        return options;
    }

    /// <summary>
    /// <c>memory://</c> lives inside one process, and every <c>bus</c> command is a process of its own: what
    /// <c>bus send</c> publishes there is lost, and <c>bus consume</c> there waits for ever. Says so.
    /// </summary>
    public static void WarnIfMemory(MessageBus bus, string what)
    {
        if (bus.Backend == "memory")
        {
            BusCli.Note($"{bus.RedactedUrl} lives inside this one command: {what}. Use --url with a broker (or set BUS__URL) to reach other processes.");
        }
    }

    /// <summary>Rejects values below <paramref name="minimum"/> when the command line is parsed (an absent optional value passes).</summary>
    public static Option<T> AtLeast<T>(this Option<T> option, int minimum)
        => option.Must(value => value is not int number || number >= minimum, $"must be at least {minimum}");

    /// <summary>
    /// Rejects a value that fails <paramref name="valid"/> when the command line is parsed, with "--name
    /// <paramref name="requirement"/>.". A value that is not of the option's type at all is left to System.CommandLine,
    /// which reports it (reading it here threw, and the command ended with a stack trace).
    /// </summary>
    public static Option<T> Must<T>(this Option<T> option, Func<T?, bool> valid, string requirement)
    {
        option.Validators.Add(result =>
        {
            T? value;
            try
            {
                value = result.GetValueOrDefault<T>();
            }
            catch (InvalidOperationException)
            {
                return; // did not convert: already an error of its own
            }

            if (!valid(value))
            {
                result.AddError($"{option.Name} {requirement}.");
            }
        });
        return option;
    }
}
