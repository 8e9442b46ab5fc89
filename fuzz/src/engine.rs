//! The fuzz loop: replay the seed corpus, then mutate inputs drawn from a pool (the seeds plus
//! every generated input whose [`Outcome`] was new), run each under `catch_unwind`, and stop at
//! the first panic with the input saved. Before each run the input is also written to a
//! "current input" file, so a supervisor can save it when the process dies without unwinding
//! (a stack overflow or an allocation failure aborts).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate::Mutator;
use crate::targets::{Fnv, Outcome, Target};

/// The most inputs the pool holds (seeds included); past it, an input with a new outcome
/// takes the place of a generated one drawn at random.
const POOL_CAP: usize = 4096;

/// An input that took longer than this is saved as `slow-*.bin` and reported (not a failure).
const SLOW: Duration = Duration::from_secs(1);

/// The seed inputs of `dir`, sorted by file name (an absent folder has none).
pub fn load_corpus(dir: &Path) -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            paths.push(entry.path());
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|p| fs::read(&p).map(|bytes| (p, bytes)))
        .collect()
}

/// The panic message of a payload from `catch_unwind`.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Runs one input; `Err` holds the message of a panic.
pub fn run_one(target: Target, input: &[u8], work: &Path) -> Result<Outcome, String> {
    catch_unwind(AssertUnwindSafe(|| target.run(input, work))).map_err(|p| panic_message(&*p))
}

/// The name an input is saved under: `<kind>-<target>-<FNV-1a of the bytes>.bin`.
pub fn input_file_name(kind: &str, target: Target, input: &[u8]) -> String {
    let mut h = Fnv::new();
    h.write(input);
    format!("{kind}-{}-{:016x}.bin", target.name(), h.finish())
}

/// How long to fuzz and where to write.
#[derive(Debug, Clone)]
pub struct Config {
    pub target: Target,
    pub seed: u64,
    /// Stop after this long...
    pub duration: Option<Duration>,
    /// ...or after this many generated inputs, whichever comes first.
    pub iterations: Option<u64>,
    /// Crash and slow inputs are written here; the target's scratch files go below it.
    pub out: PathBuf,
    /// Write each input to [`Config::current_input_path`] before running it.
    pub record_current: bool,
}

impl Config {
    /// Where the input being run is kept, for a supervisor to save if the process aborts.
    pub fn current_input_path(&self) -> PathBuf {
        self.out.join(format!("current-{}.bin", self.target.name()))
    }

    /// The target's scratch folder.
    pub fn work_dir(&self) -> PathBuf {
        self.out.join(format!("work-{}", self.target.name()))
    }
}

/// A panic: the input that caused it, its message and where it was saved.
#[derive(Debug, Clone)]
pub struct Crash {
    pub input: Vec<u8>,
    pub message: String,
    pub saved: PathBuf,
    /// Whether it came from the seed corpus (otherwise from a mutation).
    pub from_corpus: bool,
}

/// What a fuzz run did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Seed inputs replayed.
    pub seeds: usize,
    /// Generated inputs run.
    pub execs: u64,
    pub elapsed: Duration,
    /// Distinct outcomes seen (seeds included).
    pub outcomes: usize,
    /// Inputs in the pool at the end.
    pub pool: usize,
    /// Inputs slower than a second, saved.
    pub slow: Vec<PathBuf>,
    pub crash: Option<Crash>,
}

/// Writes `input` over the file's previous content.
fn record(file: &mut File, input: &[u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(0))?;
    file.write_all(input)?;
    file.set_len(input.len() as u64)
}

/// Fuzzes `cfg.target` from `seeds`.
pub fn fuzz(cfg: &Config, seeds: Vec<Vec<u8>>) -> io::Result<Report> {
    let target = cfg.target;
    fs::create_dir_all(cfg.work_dir())?;
    let work = cfg.work_dir();
    let mut current = if cfg.record_current {
        Some(File::create(cfg.current_input_path())?)
    } else {
        None
    };
    let started = Instant::now();
    let mut report = Report {
        seeds: seeds.len(),
        ..Report::default()
    };
    let mut seen: HashSet<Outcome> = HashSet::new();
    let mut pool: Vec<Vec<u8>> = Vec::with_capacity(POOL_CAP.min(seeds.len() + 1024));
    let mut saved_slow: HashSet<String> = HashSet::new();
    let mut run = |input: &[u8], from_corpus: bool, report: &mut Report| -> io::Result<bool> {
        if let Some(file) = current.as_mut() {
            record(file, input)?;
        }
        let t = Instant::now();
        let result = run_one(target, input, &work);
        if t.elapsed() > SLOW {
            let name = input_file_name("slow", target, input);
            if saved_slow.insert(name.clone()) {
                let path = cfg.out.join(name);
                fs::write(&path, input)?;
                report.slow.push(path);
            }
        }
        match result {
            Ok(outcome) => Ok(seen.insert(outcome)),
            Err(message) => {
                let saved = cfg.out.join(input_file_name("crash", target, input));
                fs::write(&saved, input)?;
                report.crash = Some(Crash {
                    input: input.to_vec(),
                    message,
                    saved,
                    from_corpus,
                });
                Ok(false)
            }
        }
    };
    for seed in seeds {
        run(&seed, true, &mut report)?;
        if report.crash.is_some() {
            break;
        }
        pool.push(seed);
    }
    if pool.is_empty() {
        pool.push(Vec::new());
    }
    let mut mutator = Mutator::new(cfg.seed, target.dictionary(), target.max_len());
    while report.crash.is_none() {
        if cfg.iterations.is_some_and(|n| report.execs >= n)
            || cfg.duration.is_some_and(|d| started.elapsed() >= d)
        {
            break;
        }
        let parent = mutator.below(pool.len());
        let other = mutator.below(pool.len());
        let input = mutator.mutate(&pool[parent], &pool[other]);
        report.execs += 1;
        if run(&input, false, &mut report)? {
            if pool.len() < POOL_CAP {
                pool.push(input);
            } else {
                let k = report.seeds.min(POOL_CAP - 1);
                let at = k + mutator.below(POOL_CAP - k);
                pool[at] = input;
            }
        }
    }
    report.outcomes = seen.len();
    report.pool = pool.len();
    report.elapsed = started.elapsed();
    Ok(report)
}
