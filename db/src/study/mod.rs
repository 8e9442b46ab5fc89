//! Studies in SQLite, in Optuna's own RDB schema (Optuna 5.0.0: schema version 12, alembic
//! revision `v3.2.0.a`; ../shared/optuna-schema), so that `optuna.load_study` and
//! optuna-dashboard open our files as their own, and we read and continue theirs.
//!
//! - [`StudyFile`] reads: the studies of a file, one study's trials with their params (and
//!   distributions), values, states, user and system attributes ([`StudyFile::load`]), or the
//!   same rows streamed table by table into a [`StudyVisitor`] ([`StudyFile::visit`]: a
//!   million trials cost what the visitor keeps of them). It is the only code that reads
//!   Optuna's tables: `etrading study`, resume, promotion (`pg::candidate`) and the report's
//!   columnar export all go through it.
//! - [`StudyWriter`] writes through one thread that owns the connection and batches what it
//!   is sent into transactions (`BEGIN IMMEDIATE`, so several processes can write the same
//!   file: each transaction allocates its trial numbers under the write lock).
//!
//! Files are opened with `journal_mode=WAL`, `synchronous=NORMAL`, `temp_store=MEMORY` and a
//! `busy_timeout`. Invariant: db stores and loads; it runs no backtest.

mod distribution;
mod pyjson;
mod read;
mod schema;
mod visit;
mod write;

use std::path::{Path, PathBuf};

pub use distribution::{
    distribution_json, external_value, internal_value, param_json, parse_distribution,
    space_distributions,
};
pub use pyjson::{JsonValue, python_float};
pub use read::{Study, StudyFile, StudySummary, Trial, TrialParam};
pub use schema::{ALEMBIC_VERSION, LIBRARY_VERSION, SCHEMA_VERSION};
pub use visit::{StudyHeader, StudyVisitor, TrialRow, TrialTable};
pub use write::{
    NewTrial, OpenMode, OpenReport, StudyOptions, StudyWriter, TrialHandle, TrialOutcome,
    TrialRecord, WriterStats, set_study_user_attr,
};

/// The study file used when no `--storage` is given.
pub const DEFAULT_STORAGE_PATH: &str = "db/optimization_study.db";

/// How long a connection waits for another process's write lock before failing.
pub const BUSY_TIMEOUT_MS: u64 = 60_000;

/// Optimisation direction of one objective (`study_directions.direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Minimize,
    Maximize,
}

impl Direction {
    /// `MINIMIZE` or `MAXIMIZE`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "MINIMIZE",
            Direction::Maximize => "MAXIMIZE",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        match text {
            "MINIMIZE" => Some(Direction::Minimize),
            "MAXIMIZE" => Some(Direction::Maximize),
            _ => None,
        }
    }

    /// Whether `a` is better than `b` in this direction.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

/// `trials.state`, as Optuna's `TrialState` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrialState {
    Running,
    Waiting,
    Complete,
    Pruned,
    Fail,
}

impl TrialState {
    pub const ALL: [TrialState; 5] = [
        TrialState::Running,
        TrialState::Waiting,
        TrialState::Complete,
        TrialState::Pruned,
        TrialState::Fail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Running => "RUNNING",
            TrialState::Waiting => "WAITING",
            TrialState::Complete => "COMPLETE",
            TrialState::Pruned => "PRUNED",
            TrialState::Fail => "FAIL",
        }
    }

    pub fn parse(text: &str) -> Option<TrialState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// COMPLETE, PRUNED or FAIL.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TrialState::Complete | TrialState::Pruned | TrialState::Fail
        )
    }
}

/// What can go wrong with a study file.
#[derive(Debug, thiserror::Error)]
pub enum StudyError {
    /// The message includes SQLite's, so it is not also chained as a `source` (an `{:#}` chain
    /// would print it again, and SQLite's own source once more).
    #[error("{path}: {error}")]
    Sqlite {
        path: String,
        error: rusqlite::Error,
    },
    #[error(
        "{path}: not an Optuna storage this version can use: {what} (expected alembic revision {ALEMBIC_VERSION}, schema version {SCHEMA_VERSION})"
    )]
    Schema { path: String, what: String },
    #[error("{path}: no study named {name:?} (studies: {available})")]
    NoStudy {
        path: String,
        name: String,
        available: String,
    },
    #[error(
        "{path}: study {name:?} already exists with {trials} trials; resume it (--resume) or choose another name"
    )]
    StudyExists {
        path: String,
        name: String,
        trials: usize,
    },
    #[error(
        "{path}: study {name:?} was computed with {key} = {stored}, this run has {key} = {this_run}; use another --study name (or the inputs it was run with)"
    )]
    ResumeMismatch {
        path: String,
        name: String,
        key: String,
        stored: String,
        this_run: String,
    },
    #[error("{path}: study {name:?} is {found}, this run needs {expected}")]
    DirectionMismatch {
        path: String,
        name: String,
        found: String,
        expected: String,
    },
    #[error("{path}: study {study:?} trial {number}: {message}")]
    BadTrial {
        path: String,
        study: String,
        number: i64,
        message: String,
    },
    #[error("{path}: study {study:?}: {message}")]
    BadStudy {
        path: String,
        study: String,
        message: String,
    },
    /// Another live process writes the study ([`crate::lock`]).
    #[error(transparent)]
    Locked(#[from] crate::lock::LockError),
    #[error("storage {url:?}: {message}")]
    Url { url: String, message: String },
    #[error("{path}: no such study file")]
    NoFile { path: String },
    #[error("{path}: the study writer stopped: {message}")]
    WriterStopped { path: String, message: String },
}

/// The file of a `sqlite:///PATH` storage URL, as SQLAlchemy reads it: `sqlite:///rel.db` is
/// relative to the working directory, `sqlite:////abs/path.db` absolute. A plain path (no
/// scheme) is accepted as is.
pub fn parse_storage_url(url: &str) -> Result<PathBuf, StudyError> {
    if let Some(rest) = url.strip_prefix("sqlite:///") {
        if rest.is_empty() || rest == ":memory:" {
            return Err(StudyError::Url {
                url: url.to_string(),
                message: "an in-memory database cannot hold a study between runs; name a file"
                    .to_string(),
            });
        }
        let path = rest.split('?').next().unwrap_or(rest);
        return Ok(PathBuf::from(path));
    }
    if url.contains("://") {
        return Err(StudyError::Url {
            url: url.to_string(),
            message: "only sqlite:///PATH storages are supported (PostgreSQL holds promoted configs, not studies)".to_string(),
        });
    }
    Ok(PathBuf::from(url))
}

/// A path as text for messages.
fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Local time in Optuna's datetime format (`YYYY-MM-DD HH:MM:SS.ffffff`, naive, as Python's
/// `datetime.now()`).
pub fn now_text() -> String {
    chrono::Local::now()
        .format("%Y-%m-%d %H:%M:%S%.6f")
        .to_string()
}
