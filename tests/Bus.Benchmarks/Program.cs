using BenchmarkDotNet.Running;
using Bus.Benchmarks;

// dotnet run -c Release --project tests/Bus.Benchmarks -- --filter '*Memory*'
// dotnet run -c Release --project tests/Bus.Benchmarks -- --paired RedisBenchmarks [rounds] [methods]   (see PairedRunner)
if (args.Length >= 2 && args[0] == "--paired")
{
    var rounds = args.Length >= 3 && int.TryParse(args[2], out var n) && n > 0 ? n : 15;
    return await PairedRunner.RunAsync(args[1], rounds, args.Length >= 4 ? args[3].Split(',') : null);
}

BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
return 0;
