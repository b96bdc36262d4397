namespace Bus.Brokers.Tests;

internal static class RepositoryPaths
{
    /// <summary>The repository root: the nearest parent of the test assembly that holds docker-compose.yml.</summary>
    public static string Root { get; } = FindRoot();

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "docker-compose.yml")) && Directory.Exists(Path.Combine(dir.FullName, "docker")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No docker-compose.yml above {AppContext.BaseDirectory}.");
    }
}
