//! The committed corpus under `cargo test`: every input of every target runs without a panic
//! (each regression input a fuzz run found among them), plus a short seeded fuzz run per
//! target and the mutator's determinism.

use std::path::Path;
use std::time::Duration;

use etrading_fuzz::{CORPUS_DIR, Config, Mutator, Target, fuzz, load_corpus, run_one};

/// The fewest seed inputs a target's corpus may hold, so the replay cannot pass vacuously.
const MIN_SEEDS: usize = 5;

#[test]
fn every_corpus_input_runs_without_a_panic() {
    let work = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for target in Target::ALL {
        let dir = Path::new(CORPUS_DIR).join(target.name());
        let inputs = load_corpus(&dir).unwrap();
        assert!(
            inputs.len() >= MIN_SEEDS,
            "{}: {} inputs, expected at least {MIN_SEEDS}",
            dir.display(),
            inputs.len()
        );
        for (path, input) in &inputs {
            if let Err(message) = run_one(target, input, work.path()) {
                failures.push(format!("{}: {message}", path.display()));
            }
        }
    }
    assert!(failures.is_empty(), "panics:\n{}", failures.join("\n"));
}

#[test]
fn a_short_seeded_run_of_each_target_finds_no_crash() {
    let out = tempfile::tempdir().unwrap();
    for target in Target::ALL {
        let seeds = load_corpus(&Path::new(CORPUS_DIR).join(target.name()))
            .unwrap()
            .into_iter()
            .map(|(_, bytes)| bytes)
            .collect();
        let cfg = Config {
            target,
            seed: 20_251_207,
            duration: Some(Duration::from_secs(20)),
            iterations: Some(2000),
            out: out.path().to_path_buf(),
            record_current: true,
        };
        let report = fuzz(&cfg, seeds).unwrap();
        if let Some(crash) = &report.crash {
            panic!(
                "{}: {} (input saved as {})",
                target.name(),
                crash.message,
                crash.saved.display()
            );
        }
        assert!(report.execs > 0, "{}: nothing ran", target.name());
        assert!(
            report.outcomes > 1,
            "{}: every input behaved alike",
            target.name()
        );
    }
}

#[test]
fn mutations_are_seeded_and_bounded() {
    let parent = b"open_time,open,high,low,close,volume\n1735689600000,1,2,0.5,1,1\n";
    let run = |seed| {
        let mut m = Mutator::new(seed, Target::Klines.dictionary(), 100);
        (0..200)
            .map(|_| m.mutate(parent, b"1735693200000,1,2,0.5,1,1\n"))
            .collect::<Vec<_>>()
    };
    let a = run(7);
    assert_eq!(a, run(7), "the same seed gives the same inputs");
    assert_ne!(a, run(8));
    assert!(a.iter().all(|m| m.len() <= 100));
    assert!(a.iter().any(|m| m.as_slice() != parent));
}
