//! One run identity: the inputs a sweep's rows or a study's trials are computed from (spec
//! text, `--set`, data, windows, capital, brackets, engine and TA-Lib versions, precision),
//! built once per run. A sweep's `--out` records it as `etrading.sweep.*` metadata (the Parquet
//! footer, or `FILE.csv.sweep.json`), a study as user attributes; `--resume` of either
//! compares the stored facts with this run's ([`RunIdentity::check_sweep`], and db's
//! `StudyOptions::identity` with [`RunIdentity::study_keys`]). A new input is one more
//! [`Fact`] in [`RunIdentity::facts`]: both stores record and check it.

use anyhow::bail;

use etrading_data::Panel;
use etrading_db::study::JsonValue;
use etrading_kernels::batch::{Precision, WindowPlan};
use etrading_kernels::reference::ENGINE_VERSION;
use etrading_kernels::spec::ParamValue;

use crate::backtest_cmd::talib_version;

/// The footer key (and sweep-record key) naming a sweep output's format.
pub const SWEEP_SCHEMA_KEY: &str = "etrading.schema";
/// Its value.
pub const SWEEP_SCHEMA: &str = "etrading.sweep/1";
/// The prefix of a fact's key in a sweep output.
const SWEEP_PREFIX: &str = "etrading.sweep.";

/// What a run's results are computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct RunIdentity {
    /// The spec file's text as read.
    pub spec_text: String,
    /// The params `--set` fixes, `name=value`, sorted (empty: none fixed).
    pub set: Vec<String>,
    /// The panel's content hash.
    pub data_hash: String,
    pub symbols: Vec<String>,
    pub interval: String,
    /// Every window as `KIND START..END` (bars).
    pub windows: Vec<String>,
    /// Starting balance, USDT.
    pub capital: f64,
    /// Where the bracket tables come from (`bundled 2026-03-05`, `file PATH`).
    pub brackets: String,
    pub engine_version: String,
    pub talib_version: String,
    /// The float precision of the backend (`f64`, `f32`).
    pub precision: String,
    /// The objective the trials are scored by (`calmar`, ...: the spec's, or `optimize
    /// --objective`).
    pub objective: String,
}

/// One input of a [`RunIdentity`], as each store records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// Its name in messages and, after `etrading.sweep.`, its key in a sweep output.
    pub name: &'static str,
    /// The study attribute holding it; `None` where a study does not record it (`--set`: a
    /// study may gather the trials of sweeps that fix different params).
    pub study_key: Option<&'static str>,
    /// Whether every sweep output records it: a sweep output without it is refused. `false`
    /// for facts recorded since a later version (the files written before lack them and are
    /// not checked for them).
    pub in_every_sweep: bool,
    /// The value in a sweep output.
    pub text: String,
    /// The value as a study attribute.
    pub json: JsonValue,
}

impl Fact {
    /// The key in a sweep output (`etrading.sweep.data_hash`).
    pub fn sweep_key(&self) -> String {
        format!("{SWEEP_PREFIX}{}", self.name)
    }
}

/// How a param value is written in `--set` texts and sweep outputs: numbers and booleans as
/// Rust prints them, strings unquoted.
pub fn value_text(v: &ParamValue) -> String {
    match v {
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Float(f) => f.to_string(),
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Str(s) => s.clone(),
    }
}

impl RunIdentity {
    /// The identity of a run of `spec_text` with `set` fixed (`name`, value), on `panel`,
    /// `windows`, `capital`, brackets `brackets` and a backend of `precision`; the engine and
    /// TA-Lib versions are this build's. Its objective is given by [`RunIdentity::scored_by`].
    pub fn new(
        spec_text: String,
        set: &[(&str, &ParamValue)],
        panel: &Panel,
        windows: &WindowPlan,
        capital: f64,
        brackets: &str,
        precision: Precision,
    ) -> RunIdentity {
        let mut set: Vec<String> = set
            .iter()
            .map(|(name, v)| format!("{name}={}", value_text(v)))
            .collect();
        set.sort();
        set.dedup();
        RunIdentity {
            spec_text,
            set,
            data_hash: panel.content_hash(),
            symbols: panel.symbols.clone(),
            interval: panel.interval.to_string(),
            windows: windows
                .windows()
                .iter()
                .map(|w| format!("{} {}..{}", w.kind.label(), w.start, w.end))
                .collect(),
            capital,
            brackets: brackets.to_string(),
            engine_version: ENGINE_VERSION.to_string(),
            talib_version: talib_version(),
            precision: precision.name().to_string(),
            objective: String::new(),
        }
    }

    /// The same identity, its trials scored by `objective` (`ObjectiveName::name`).
    pub fn scored_by(self, objective: &str) -> RunIdentity {
        RunIdentity {
            objective: objective.to_string(),
            ..self
        }
    }

    /// Every fact, in the order sweep outputs record them. The names and keys are on disk in
    /// existing files: keep them.
    pub fn facts(&self) -> Vec<Fact> {
        let text = |name, study_key, in_every_sweep, value: &str| Fact {
            name,
            study_key,
            in_every_sweep,
            text: value.to_string(),
            json: JsonValue::Str(value.to_string()),
        };
        let set = if self.set.is_empty() {
            "(none)".to_string()
        } else {
            self.set.join(" ")
        };
        vec![
            text("spec", Some("spec"), true, &self.spec_text),
            text("set", None, true, &set),
            text("data_hash", Some("data_hash"), true, &self.data_hash),
            Fact {
                name: "symbols",
                study_key: Some("symbols"),
                in_every_sweep: false,
                text: self.symbols.join(","),
                json: JsonValue::Array(
                    self.symbols
                        .iter()
                        .map(|s| JsonValue::Str(s.clone()))
                        .collect(),
                ),
            },
            text("interval", Some("interval"), false, &self.interval),
            text("windows", Some("windows"), true, &self.windows.join(", ")),
            Fact {
                name: "capital",
                study_key: Some("initial_capital"),
                in_every_sweep: true,
                text: self.capital.to_string(),
                json: JsonValue::Float(self.capital),
            },
            text("brackets", Some("brackets"), true, &self.brackets),
            text(
                "engine_version",
                Some("engine_version"),
                true,
                &self.engine_version,
            ),
            text(
                "talib_version",
                Some("talib_version"),
                false,
                &self.talib_version,
            ),
            text("precision", Some("precision"), true, &self.precision),
            // Recorded since the objective could differ from the spec's (`optimize
            // --objective`); a study has always had the attribute, so it is checked there too.
            text("objective", Some("objective"), false, &self.objective),
        ]
    }

    /// The `etrading.sweep.*` metadata of a sweep output, after its schema key.
    pub fn sweep_metadata(&self) -> Vec<(String, String)> {
        let mut out = vec![(SWEEP_SCHEMA_KEY.to_string(), SWEEP_SCHEMA.to_string())];
        out.extend(self.facts().into_iter().map(|f| (f.sweep_key(), f.text)));
        out
    }

    /// Refuses stored sweep metadata (a Parquet footer's, or a CSV's sweep record) that is not
    /// this run's, naming `file` and the first fact that differs; `advice` ends the message.
    pub fn check_sweep(
        &self,
        file: &str,
        stored: &[(String, String)],
        advice: &str,
    ) -> anyhow::Result<()> {
        let value = |key: &str| {
            stored
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        if value(SWEEP_SCHEMA_KEY) != Some(SWEEP_SCHEMA) {
            bail!(
                "{file}: not a sweep output of this etrading (it records no {SWEEP_SCHEMA_KEY} = {SWEEP_SCHEMA}); {advice}"
            );
        }
        for fact in self.facts() {
            match value(&fact.sweep_key()) {
                None if fact.in_every_sweep => bail!(
                    "{file}: records no {} (written by another version?); {advice}",
                    fact.name
                ),
                None => {}
                Some(theirs) if theirs != fact.text => bail!(
                    "{file}: another sweep's output: {}; {advice}",
                    difference(fact.name, theirs, &fact.text)
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The study attributes of this identity (study attribute name, value).
    pub fn study_attrs(&self) -> Vec<(String, JsonValue)> {
        self.facts()
            .into_iter()
            .filter_map(|f| Some((f.study_key?.to_string(), f.json)))
            .collect()
    }

    /// The study attributes a resumed study must share with this run
    /// (`StudyOptions::identity`).
    pub fn study_keys(&self) -> Vec<String> {
        self.facts()
            .into_iter()
            .filter_map(|f| Some(f.study_key?.to_string()))
            .collect()
    }

    /// What every trial records besides its own numbers: the facts that tell apart trials of
    /// one study written by different builds or backends.
    pub fn trial_attrs(&self) -> [(String, JsonValue); 4] {
        [
            ("data_hash", &self.data_hash),
            ("engine_version", &self.engine_version),
            ("talib_version", &self.talib_version),
            ("precision", &self.precision),
        ]
        .map(|(k, v)| (k.to_string(), JsonValue::Str(v.clone())))
    }
}

/// What differs between a stored value of fact `what` and this run's, in words.
fn difference(what: &str, theirs: &str, ours: &str) -> String {
    match what {
        "spec" => {
            let (a, b): (Vec<&str>, Vec<&str>) = (theirs.lines().collect(), ours.lines().collect());
            let line = a
                .iter()
                .zip(&b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            format!(
                "the spec text differs at line {} (stored {:?}, this spec {:?})",
                line + 1,
                a.get(line).copied().unwrap_or("<end>"),
                b.get(line).copied().unwrap_or("<end>")
            )
        }
        "set" => format!("--set differs (stored {theirs}, this run {ours})"),
        "data_hash" => format!(
            "the data differs (stored data hash {theirs}, this run's {ours}: other files, symbols, dates or interval)"
        ),
        "windows" => format!("the walk-forward windows differ (stored {theirs}, this run {ours})"),
        "precision" => format!(
            "the precision differs (stored {theirs} results, this run {ours}: another --backend or --precision)"
        ),
        _ => format!("the {what} differs (stored {theirs:?}, this run {ours:?})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etrading_db::study::{Direction, OpenMode, StudyError, StudyOptions, StudyWriter};

    fn base() -> RunIdentity {
        RunIdentity {
            spec_text: "[strategy]\nid = \"t\"\n".to_string(),
            set: vec!["ema_long=200".to_string(), "rsi_window=14".to_string()],
            data_hash: "ab".repeat(32),
            symbols: vec!["BTCUSDT".to_string(), "ETHUSDT".to_string()],
            interval: "1h".to_string(),
            windows: vec!["full 0..100".to_string()],
            capital: 10_000.0,
            brackets: "bundled 2026-03-05".to_string(),
            engine_version: "0.1.0".to_string(),
            talib_version: "0.4.0".to_string(),
            precision: "f64".to_string(),
            objective: "calmar".to_string(),
        }
    }

    /// One changed input per field: the fact it changes, the change, and what the refusal of
    /// a sweep output says.
    type Change = (&'static str, fn(&mut RunIdentity), &'static str);

    fn changes() -> Vec<Change> {
        // Naming every field: a new field does not compile until it has a change here.
        let RunIdentity {
            spec_text: _,
            set: _,
            data_hash: _,
            symbols: _,
            interval: _,
            windows: _,
            capital: _,
            brackets: _,
            engine_version: _,
            talib_version: _,
            precision: _,
            objective: _,
        } = base();
        vec![
            (
                "spec",
                |r| r.spec_text.push_str("# tuned\n"),
                "the spec text differs at line 3 (stored \"<end>\", this spec \"# tuned\")",
            ),
            (
                "set",
                |r| r.set.push("leverage=3".to_string()),
                "--set differs (stored ema_long=200 rsi_window=14, this run ema_long=200 rsi_window=14 leverage=3)",
            ),
            (
                "data_hash",
                |r| r.data_hash = "cd".repeat(32),
                "the data differs (stored data hash abab",
            ),
            (
                "symbols",
                |r| r.symbols.truncate(1),
                "the symbols differs (stored \"BTCUSDT,ETHUSDT\", this run \"BTCUSDT\")",
            ),
            (
                "interval",
                |r| r.interval = "4h".to_string(),
                "the interval differs (stored \"1h\", this run \"4h\")",
            ),
            (
                "windows",
                |r| r.windows.push("out-of-sample 100..200".to_string()),
                "the walk-forward windows differ (stored full 0..100, this run full 0..100, out-of-sample 100..200)",
            ),
            (
                "capital",
                |r| r.capital = 5_000.0,
                "the capital differs (stored \"10000\", this run \"5000\")",
            ),
            (
                "brackets",
                |r| r.brackets = "file b.json".to_string(),
                "the brackets differs (stored \"bundled 2026-03-05\", this run \"file b.json\")",
            ),
            (
                "engine_version",
                |r| r.engine_version = "0.2.0".to_string(),
                "the engine_version differs (stored \"0.1.0\", this run \"0.2.0\")",
            ),
            (
                "talib_version",
                |r| r.talib_version = "none".to_string(),
                "the talib_version differs (stored \"0.4.0\", this run \"none\")",
            ),
            (
                "precision",
                |r| r.precision = "f32".to_string(),
                "the precision differs (stored f64 results, this run f32: another --backend or --precision)",
            ),
            (
                "objective",
                |r| r.objective = "robust".to_string(),
                "the objective differs (stored \"calmar\", this run \"robust\")",
            ),
        ]
    }

    #[test]
    fn every_field_is_a_fact_with_a_change() {
        let names: Vec<&str> = base().facts().iter().map(|f| f.name).collect();
        let changed: Vec<&str> = changes().iter().map(|c| c.0).collect();
        assert_eq!(names, changed);
        for (name, change, _) in changes() {
            let mut other = base();
            change(&mut other);
            let differs: Vec<&str> = base()
                .facts()
                .into_iter()
                .zip(other.facts())
                .filter(|(a, b)| a != b)
                .map(|(a, _)| a.name)
                .collect();
            assert_eq!(
                differs,
                [name],
                "the change of {name} changes that fact only"
            );
        }
    }

    /// The keys existing sweep outputs and studies hold: renaming one orphans their files.
    #[test]
    fn the_names_on_disk_stay() {
        let keys: Vec<String> = base().sweep_metadata().into_iter().map(|p| p.0).collect();
        assert_eq!(
            keys,
            [
                "etrading.schema",
                "etrading.sweep.spec",
                "etrading.sweep.set",
                "etrading.sweep.data_hash",
                "etrading.sweep.symbols",
                "etrading.sweep.interval",
                "etrading.sweep.windows",
                "etrading.sweep.capital",
                "etrading.sweep.brackets",
                "etrading.sweep.engine_version",
                "etrading.sweep.talib_version",
                "etrading.sweep.precision",
                "etrading.sweep.objective",
            ]
        );
        assert_eq!(
            base().study_keys(),
            [
                "spec",
                "data_hash",
                "symbols",
                "interval",
                "windows",
                "initial_capital",
                "brackets",
                "engine_version",
                "talib_version",
                "precision",
                "objective",
            ]
        );
        let set = base().sweep_metadata().swap_remove(2).1;
        assert_eq!(set, "ema_long=200 rsi_window=14");
        let mut none = base();
        none.set.clear();
        assert_eq!(none.sweep_metadata().swap_remove(2).1, "(none)");
        assert_eq!(
            base().trial_attrs().map(|a| a.0),
            ["data_hash", "engine_version", "talib_version", "precision"]
        );
    }

    #[track_caller]
    fn check_sweep(stored: &[(String, String)], ours: &RunIdentity, expect: Result<(), &str>) {
        let got = ours.check_sweep("F", stored, "advice");
        match (got, expect) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(text)) => {
                let e = e.to_string();
                assert!(e.starts_with("F: "), "{e}");
                assert!(e.contains(text), "{e}\nexpected: {text}");
                assert!(e.ends_with("; advice"), "{e}");
            }
            (got, expect) => panic!("got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn a_sweep_resume_checks_every_fact() {
        let stored = base().sweep_metadata();
        check_sweep(&stored, &base(), Ok(()));
        for (name, change, message) in changes() {
            let mut ours = base();
            change(&mut ours);
            check_sweep(&stored, &ours, Err(message));
            // ... and the same in the other direction.
            let theirs = ours.sweep_metadata();
            let err = base().check_sweep("F", &theirs, "advice").unwrap_err();
            assert!(
                err.to_string().contains("another sweep's output: "),
                "{name}: {err}"
            );
        }
        // What the unchecked keys say does not matter.
        let mut extra = stored.clone();
        extra.push(("etrading.sweep.backend".into(), "gpu".into()));
        check_sweep(&extra, &base(), Ok(()));
    }

    #[test]
    fn a_sweep_output_without_a_fact_is_refused_unless_it_predates_it() {
        let without = |key: &str| -> Vec<(String, String)> {
            base()
                .sweep_metadata()
                .into_iter()
                .filter(|(k, _)| k != key)
                .collect()
        };
        check_sweep(
            &without("etrading.schema"),
            &base(),
            Err(
                "not a sweep output of this etrading (it records no etrading.schema = etrading.sweep/1)",
            ),
        );
        for fact in base().facts() {
            let stored = without(&fact.sweep_key());
            if fact.in_every_sweep {
                let expect = format!("records no {} (written by another version?)", fact.name);
                check_sweep(&stored, &base(), Err(&expect));
            } else {
                check_sweep(&stored, &base(), Ok(()));
            }
        }
        // What an output written before symbols, interval and talib_version were recorded
        // holds (etrading 37d5294): it resumes.
        let old: Vec<(String, String)> = base()
            .sweep_metadata()
            .into_iter()
            .filter(|(k, _)| {
                !k.ends_with(".symbols")
                    && !k.ends_with(".interval")
                    && !k.ends_with(".talib_version")
                    && !k.ends_with(".objective")
            })
            .collect();
        assert_eq!(old.len(), 9);
        check_sweep(&old, &base(), Ok(()));
    }

    fn study_options(identity: &RunIdentity, mode: OpenMode) -> StudyOptions {
        let mut user_attrs = vec![("sampler".to_string(), JsonValue::Str("sweep".into()))];
        user_attrs.extend(identity.study_attrs());
        StudyOptions {
            name: "s".to_string(),
            direction: Direction::Maximize,
            mode,
            params: Vec::new(),
            user_attrs,
            identity: identity.study_keys(),
        }
    }

    #[test]
    fn a_study_resume_checks_every_fact_it_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let open = |identity: &RunIdentity| {
            StudyWriter::open(&path, study_options(identity, OpenMode::Resume))
                .map(|(writer, _)| writer.close().unwrap())
        };
        let (writer, report) =
            StudyWriter::open(&path, study_options(&base(), OpenMode::Create)).unwrap();
        writer.close().unwrap();
        assert!(report.created);
        open(&base()).unwrap();
        for (name, change, _) in changes() {
            let mut ours = base();
            change(&mut ours);
            let study_key = ours
                .facts()
                .into_iter()
                .find(|f| f.name == name)
                .unwrap()
                .study_key;
            match (open(&ours), study_key) {
                (Err(StudyError::ResumeMismatch { key, .. }), Some(study_key)) => {
                    assert_eq!(key, study_key, "{name}");
                }
                // A study gathers the trials of sweeps that fix different params.
                (Ok(_), None) => {}
                (got, _) => panic!("{name}: {got:?}"),
            }
        }
    }
}
