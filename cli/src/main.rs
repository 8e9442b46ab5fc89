//! The `etrading` binary: clap arguments close to the flags, a validated configuration built
//! after parsing, and `main` mapping errors to exit codes (a closed pipe is success).

mod backtest_cmd;
mod bench;
mod data_cmd;
mod fetch_cmd;
mod sysinfo;

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// e-trading: research-to-production backtesting for Binance USDT-M perpetual futures.
#[derive(Debug, Parser)]
#[command(name = "etrading", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Market data: inspect and validate files, generate synthetic data.
    #[command(subcommand)]
    Data(data_cmd::DataCommand),
    /// One reference backtest of a strategy spec: metrics, or metrics and trades as JSON.
    Backtest(backtest_cmd::BacktestArgs),
    /// Benchmarks (speed and memory targets are measured here, never in tests).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => data_cmd::run(cmd, out),
        Command::Bench(cmd) => bench::run(cmd, out),
        Command::Backtest(args) => backtest_cmd::run(&args, out),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).and_then(|()| out.flush().map_err(Into::into));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
