//! The `etrading` binary: clap arguments close to the flags, a validated configuration built
//! after parsing, and `main` mapping errors to exit codes (a closed pipe is success).

mod backtest_cmd;
mod bench;
mod bench_samplers;
mod data_cmd;
mod fetch_cmd;
mod identity;
mod optimize_cmd;
mod parity_cmd;
mod promote_cmd;
mod report_cmd;
mod research;
mod study_cmd;
mod sweep_cmd;
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
    /// Batched search over a spec's parameter space (grid, random, TPE), written as an
    /// Optuna-compatible study.
    Optimize(optimize_cmd::OptimizeArgs),
    /// Studies: list, show, best, export.
    #[command(subcommand)]
    Study(study_cmd::StudyCommand),
    /// Every grid point of a spec through a batch backend, ranked by its objective.
    Sweep(sweep_cmd::SweepArgs),
    /// Sampled param sets through every fast backend and the reference; non-zero exit on any
    /// disagreement.
    Parity(parity_cmd::ParityArgs),
    /// Benchmarks (speed and memory targets are measured here, never in tests); alone, the
    /// standard kernel benchmark.
    Bench(bench::BenchArgs),
    /// Promotes a study's trial to PostgreSQL's active_configs, after re-running it.
    Promote(promote_cmd::PromoteArgs),
    /// Restores an earlier config of a strategy as its active one.
    Rollback(promote_cmd::RollbackArgs),
    /// Lists the active configs, or every promotion and rollback.
    Configs(promote_cmd::ConfigsArgs),
    /// PostgreSQL schema: `etrading db migrate`.
    #[command(subcommand)]
    Db(promote_cmd::DbCommand),
    /// Self-contained HTML reports of a study (browser + trial pages) or of one run.
    Report(report_cmd::ReportArgs),
}

fn run(cli: Cli, out: &mut dyn Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Data(cmd) => data_cmd::run(cmd, out),
        Command::Bench(cmd) => bench::run(cmd, out),
        Command::Backtest(args) => backtest_cmd::run(&args, out),
        Command::Sweep(args) => sweep_cmd::run(&args, out),
        Command::Parity(args) => parity_cmd::run(&args, out),
        Command::Optimize(args) => optimize_cmd::run(&args, out),
        Command::Study(cmd) => study_cmd::run(cmd, out),
        Command::Promote(args) => promote_cmd::run_promote(&args, out),
        Command::Rollback(args) => promote_cmd::run_rollback(&args, out),
        Command::Configs(args) => promote_cmd::run_configs(&args, out),
        Command::Db(cmd) => promote_cmd::run_db(cmd, out),
        Command::Report(args) => report_cmd::run(&args, out),
    }
}

fn main() -> ExitCode {
    if std::env::var_os("NODEVICE_SELECT").is_none() {
        // SAFETY: nothing else runs yet (no thread has been started). Mesa's Vulkan
        // device-select layer otherwise prints an XDG_RUNTIME_DIR warning on every GPU probe.
        unsafe { std::env::set_var("NODEVICE_SELECT", "1") };
    }
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
