//! `etrading-fuzz`: fuzzes the parsers for a bounded time (`run`) or replays saved inputs
//! (`replay`). `run` starts itself as a worker process per target and watches it: a worker
//! that panics saves the input and exits 1; one that dies without unwinding (a stack overflow,
//! an aborted allocation) or hangs is caught by the supervisor, which saves the input the
//! worker was running. Exit status: 0 when no target crashed, 1 otherwise.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use etrading_fuzz::{CORPUS_DIR, Config, Target, fuzz, input_file_name, load_corpus, run_one};

#[derive(Debug, Parser)]
#[command(name = "etrading-fuzz", about = "Fuzz e-trading's parsers")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Fuzz a target (klines, funding, zip, spec, expr), or `all` of them one after another.
    Run(RunArgs),
    /// Run inputs (files, or folders of files) through a target; fails on any panic.
    Replay {
        target: String,
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// One target in this process (what `run` starts and watches).
    #[command(hide = true)]
    Worker(RunArgs),
}

#[derive(Debug, Clone, Args)]
struct RunArgs {
    /// A target name, or `all`.
    target: String,
    /// How long to fuzz each target, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Seed of the mutation engine (default: from the clock; printed, with the saved input,
    /// to reproduce a finding).
    #[arg(long)]
    seed: Option<u64>,
    /// The seed corpus: one folder per target.
    #[arg(long, default_value = CORPUS_DIR)]
    corpus: PathBuf,
    /// Where crash, hang and slow inputs and scratch files go.
    #[arg(long, default_value = "target/fuzz")]
    out: PathBuf,
}

fn targets(name: &str) -> anyhow::Result<Vec<Target>> {
    if name == "all" {
        return Ok(Target::ALL.to_vec());
    }
    match Target::from_name(name) {
        Some(t) => Ok(vec![t]),
        None => bail!(
            "unknown target {name:?}; expected all, {}",
            Target::ALL.map(Target::name).join(", ")
        ),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run(args) => supervise_all(&args),
        Cmd::Worker(args) => worker(&args),
        Cmd::Replay { target, paths } => replay(&target, &paths),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn supervise_all(args: &RunArgs) -> anyhow::Result<bool> {
    let seed = args.seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let mut clean = true;
    for (k, target) in targets(&args.target)?.into_iter().enumerate() {
        let one = RunArgs {
            target: target.name().to_string(),
            seed: Some(seed.wrapping_add(k as u64)),
            ..args.clone()
        };
        clean &= supervise(target, &one)?;
    }
    Ok(clean)
}

/// Runs one target in a worker process and watches it.
fn supervise(target: Target, args: &RunArgs) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let seed = args.seed.unwrap_or_default();
    let exe = std::env::current_exe().context("finding the fuzz binary")?;
    let mut child = Command::new(exe)
        .arg("worker")
        .arg(target.name())
        .args(["--seconds", &args.seconds.to_string()])
        .args(["--seed", &seed.to_string()])
        .arg("--corpus")
        .arg(&args.corpus)
        .arg("--out")
        .arg(&args.out)
        .spawn()
        .context("starting the fuzz worker")?;
    let current = config(target, args).current_input_path();
    // Replaying the corpus and starting up come on top of the fuzzing time.
    let deadline = Duration::from_secs(args.seconds + 60);
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for the fuzz worker")? {
            break status;
        }
        if started.elapsed() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let saved = save_current(&current, "hang", target, &args.out)?;
            eprintln!(
                "fuzz {}: HANG: the worker ran past {}s; the input it was running is {} \
                 (seed {seed})",
                target.name(),
                deadline.as_secs(),
                saved.display()
            );
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    match status.code() {
        Some(0) => Ok(true),
        // The worker saved the input and said so.
        Some(1) => Ok(false),
        _ => {
            let saved = save_current(&current, "crash", target, &args.out)?;
            eprintln!(
                "fuzz {}: CRASH: the worker died without unwinding ({status}); the input it was \
                 running is {} (seed {seed}); reproduce with: etrading-fuzz replay {} {}",
                target.name(),
                saved.display(),
                target.name(),
                saved.display()
            );
            Ok(false)
        }
    }
}

/// Copies the worker's current input to a file named after its content.
fn save_current(current: &Path, kind: &str, target: Target, out: &Path) -> anyhow::Result<PathBuf> {
    let input = std::fs::read(current).with_context(|| format!("reading {}", current.display()))?;
    let saved = out.join(input_file_name(kind, target, &input));
    std::fs::write(&saved, &input).with_context(|| format!("writing {}", saved.display()))?;
    Ok(saved)
}

fn config(target: Target, args: &RunArgs) -> Config {
    Config {
        target,
        seed: args.seed.unwrap_or_default(),
        duration: Some(Duration::from_secs(args.seconds)),
        iterations: None,
        out: args.out.clone(),
        record_current: true,
    }
}

fn worker(args: &RunArgs) -> anyhow::Result<bool> {
    let [target] = targets(&args.target)?[..] else {
        bail!("a worker runs one target");
    };
    let cfg = config(target, args);
    std::fs::create_dir_all(&cfg.out).with_context(|| format!("creating {}", cfg.out.display()))?;
    let dir = args.corpus.join(target.name());
    let seeds: Vec<Vec<u8>> = load_corpus(&dir)
        .with_context(|| format!("reading the corpus {}", dir.display()))?
        .into_iter()
        .map(|(_, bytes)| bytes)
        .collect();
    if seeds.is_empty() {
        bail!("{}: no seed inputs", dir.display());
    }
    let report = fuzz(&cfg, seeds).context("fuzzing")?;
    let secs = report.elapsed.as_secs_f64();
    println!(
        "fuzz {}: {} seeds, {} inputs in {secs:.1}s ({:.0}/s), {} distinct outcomes, pool {}, \
         seed {}",
        target.name(),
        report.seeds,
        report.execs,
        report.execs as f64 / secs.max(1e-9),
        report.outcomes,
        report.pool,
        cfg.seed
    );
    for slow in &report.slow {
        println!(
            "fuzz {}: slow input (over 1s): {}",
            target.name(),
            slow.display()
        );
    }
    if let Some(crash) = &report.crash {
        eprintln!(
            "fuzz {}: CRASH ({}): {}\n  input saved as {} ({} bytes); reproduce with: \
             etrading-fuzz replay {} {}",
            target.name(),
            if crash.from_corpus {
                "a corpus input"
            } else {
                "a generated input"
            },
            crash.message,
            crash.saved.display(),
            crash.input.len(),
            target.name(),
            crash.saved.display()
        );
        return Ok(false);
    }
    Ok(true)
}

fn replay(target: &str, paths: &[PathBuf]) -> anyhow::Result<bool> {
    let [target] = targets(target)?[..] else {
        bail!("replay runs one target");
    };
    let work = std::env::temp_dir().join(format!("etrading-fuzz-replay-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            files.extend(load_corpus(p)?);
        } else {
            files.push((
                p.clone(),
                std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
            ));
        }
    }
    let mut clean = true;
    for (path, input) in &files {
        match run_one(target, input, &work) {
            Ok(outcome) => println!("{}: ok ({:016x})", path.display(), outcome.0),
            Err(message) => {
                println!("{}: PANIC: {message}", path.display());
                clean = false;
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    Ok(clean)
}
