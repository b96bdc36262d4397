namespace Bus.Kafka.Tests;

/// <summary>
/// The test assembly's own entry point (the test SDK's generated one is turned off): <c>dotnet Bus.Kafka.Tests.dll
/// stress …</c> runs <see cref="KafkaCloseStress"/>, which starts itself again as <c>stress-child</c> for each batch of
/// rounds so that a native abort ends only that child. <c>dotnet test</c> does not use it.
/// </summary>
public static class Program
{
    public static async Task<int> Main(string[] args) => args switch
    {
        ["stress", .. var rest] => await KafkaCloseStress.RunFromCommandLineAsync(rest),
        ["stress-child", .. var rest] => await KafkaCloseStress.RunChildFromCommandLineAsync(rest),
        _ => Usage(),
    };

    private static int Usage()
    {
        Console.Error.WriteLine("usage: dotnet Bus.Kafka.Tests.dll stress [--mode bus|raw|raw-handlers] [--rounds N] [--rounds-per-child K] [--parallel P] [--bootstrap servers] [--debug 1]");
        return 2;
    }
}
