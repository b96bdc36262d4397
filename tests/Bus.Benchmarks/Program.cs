using BenchmarkDotNet.Running;

// dotnet run -c Release --project tests/Bus.Benchmarks -- --filter '*Memory*'
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
