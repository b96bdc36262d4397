using Bus.Cli;

return await BusCli.InvokeAsync(args);
