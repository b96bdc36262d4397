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
        if (!string.IsNullOrWhiteSpace(url))
        {
            options.Url = url;
        }

        return options;
    }
}
