using System.CommandLine;
using Spectre.Console;

namespace Bus.Cli.Commands;

/// <summary><c>bus backends</c>: every scheme, its backend, and what it declares.</summary>
internal static class BackendsCommand
{
    public static Command Create()
    {
        var command = new Command("backends", "List URI schemes, their backends and declared capabilities.");
        command.SetAction(_ =>
        {
            var table = new Table().AddColumns("scheme", "backend", "available", "max message", "features", "not provided");
            foreach (var (scheme, assembly) in BusTransports.KnownSchemes)
            {
                var factory = BusTransports.Find(scheme);
                if (factory is null)
                {
                    // Not loadable here: the adapter is not in this build (nats, mqtt and pulsar are not written yet).
                    table.AddRow(scheme, "", "[yellow]no[/]: " + Markup.Escape(assembly) + " is not in this build", "", "", "");
                    continue;
                }

                var capabilities = factory.Capabilities;
                var missing = Enum.GetValues<BusFeatures>().Where(f => f != BusFeatures.None && !capabilities.Supports(f));
                table.AddRow(
                    scheme,
                    factory.Backend,
                    "[green]yes[/]",
                    $"{capabilities.MaxMessageSize:N0} B",
                    Markup.Escape(string.Join(", ", Enum.GetValues<BusFeatures>().Where(f => f != BusFeatures.None && capabilities.Supports(f)))),
                    Markup.Escape(string.Join(", ", missing)));
            }

            AnsiConsole.Write(table);
            return 0;
        });
        return command;
    }
}
