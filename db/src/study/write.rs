//! Writing studies: one thread owns the connection and turns what it is sent into
//! transactions, batching every queued message into one `BEGIN IMMEDIATE` transaction.
//!
//! Two ways to write trials:
//! - [`StudyWriter::start_trials`] (synchronous: it returns the trial ids and numbers) inserts
//!   RUNNING trials with their params; [`StudyWriter::finish_trials`] (queued) later sets their
//!   state, value and attributes. A process killed in between leaves RUNNING trials, which
//!   [`OpenMode::Resume`] marks FAIL, as Optuna's stale-trial check does.
//! - [`StudyWriter::append_trials`] (queued) inserts finished trials in one go (a sweep that
//!   has every result already).
//!
//! Trial numbers are allocated inside the write transaction (`max(number) + 1` of the study),
//! so several processes writing one study keep them dense and unique.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};

use etrading_kernels::spec::Distribution;

use super::distribution::distribution_json;
use super::pyjson::JsonValue;
use super::schema::{open_for_writing, sqlite_error};
use super::{Direction, StudyError, TrialState, display, now_text};

/// What to do with the study name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the study; an existing study of that name is an error.
    Create,
    /// Continue the study (creating it when absent): its RUNNING trials, left by a run that
    /// was killed, become FAIL.
    Resume,
    /// Write into the study (creating it when absent) beside other live writers: RUNNING
    /// trials are left alone.
    Join,
}

/// The study to open.
#[derive(Clone, Debug)]
pub struct StudyOptions {
    pub name: String,
    /// Single objective.
    pub direction: Direction,
    pub mode: OpenMode,
    /// The params every trial of this writer carries, in the order of
    /// [`NewTrial::params`] / [`TrialRecord::params`].
    pub params: Vec<(String, Distribution)>,
    /// Written when the study is created.
    pub user_attrs: Vec<(String, JsonValue)>,
}

/// What opening found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    pub study_id: i64,
    pub created: bool,
    /// RUNNING trials marked FAIL ([`OpenMode::Resume`]).
    pub failed_running: usize,
}

/// A trial to start (RUNNING): one internal param value per [`StudyOptions::params`] entry.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTrial {
    pub params: Vec<f64>,
    pub system_attrs: Vec<(String, JsonValue)>,
}

/// A started trial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrialHandle {
    pub trial_id: i64,
    pub number: i64,
}

/// How a started trial ended. A NaN value is not stored (give such a trial the FAIL state).
#[derive(Clone, Debug, PartialEq)]
pub struct TrialOutcome {
    pub trial_id: i64,
    /// COMPLETE, PRUNED or FAIL.
    pub state: TrialState,
    pub value: Option<f64>,
    pub user_attrs: Vec<(String, JsonValue)>,
}

/// A finished trial written in one go.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialRecord {
    pub params: Vec<f64>,
    pub state: TrialState,
    pub value: Option<f64>,
    pub user_attrs: Vec<(String, JsonValue)>,
    pub system_attrs: Vec<(String, JsonValue)>,
}

/// Counters of a writer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    pub trials_started: u64,
    pub trials_finished: u64,
    pub trials_appended: u64,
    /// Outcomes dropped because their trial was no longer RUNNING (another process resumed
    /// the study and failed it).
    pub outcomes_dropped: u64,
    pub transactions: u64,
}

/// `(key, value as JSON text)`: attributes are serialised on the caller's thread, so the
/// writer thread only binds text.
type Attrs = Vec<(String, String)>;

fn serialise(attrs: Vec<(String, JsonValue)>) -> Attrs {
    attrs.into_iter().map(|(k, v)| (k, v.dumps())).collect()
}

struct Started {
    params: Vec<f64>,
    system_attrs: Attrs,
}

struct Finished {
    trial_id: i64,
    state: TrialState,
    value: Option<f64>,
    user_attrs: Attrs,
}

struct Appended {
    params: Vec<f64>,
    state: TrialState,
    value: Option<f64>,
    user_attrs: Attrs,
    system_attrs: Attrs,
}

enum Msg {
    Start(Vec<Started>, mpsc::Sender<Result<Vec<TrialHandle>, String>>),
    Finish(Vec<Finished>),
    Append(Vec<Appended>),
    Flush(mpsc::Sender<Result<WriterStats, String>>),
}

/// Messages queued before `send` blocks (backpressure: a writer that falls behind slows the
/// producer instead of growing memory).
const QUEUE_MESSAGES: usize = 64;
/// Queued trials merged into one transaction at most.
const TRIALS_PER_TRANSACTION: usize = 50_000;

/// A study open for writing; dropping it without [`StudyWriter::close`] still commits what was
/// sent.
#[derive(Debug)]
pub struct StudyWriter {
    path: PathBuf,
    study_id: i64,
    sender: Option<SyncSender<Msg>>,
    thread: Option<JoinHandle<()>>,
    failure: Arc<Mutex<Option<String>>>,
}

impl StudyWriter {
    /// Opens (creating when needed) the file at `path` and the study `options.name`.
    pub fn open(
        path: &Path,
        options: StudyOptions,
    ) -> Result<(StudyWriter, OpenReport), StudyError> {
        let mut conn = open_for_writing(path)?;
        let report = open_study(&mut conn, path, &options)?;
        let columns: Vec<(String, String)> = options
            .params
            .iter()
            .map(|(name, d)| (name.clone(), distribution_json(d)))
            .collect();
        let (sender, receiver) = mpsc::sync_channel(QUEUE_MESSAGES);
        let failure = Arc::new(Mutex::new(None));
        let worker = Worker {
            conn,
            path: path.to_path_buf(),
            failure: Arc::clone(&failure),
            state: WriterState {
                study_id: report.study_id,
                columns,
                stats: WriterStats::default(),
            },
        };
        let thread = std::thread::Builder::new()
            .name("study-writer".to_string())
            .spawn(move || worker.run(receiver))
            .map_err(|e| StudyError::WriterStopped {
                path: display(path),
                message: format!("starting the writer thread: {e}"),
            })?;
        Ok((
            StudyWriter {
                path: path.to_path_buf(),
                study_id: report.study_id,
                sender: Some(sender),
                thread: Some(thread),
                failure,
            },
            report,
        ))
    }

    pub fn study_id(&self) -> i64 {
        self.study_id
    }

    fn stopped(&self, message: String) -> StudyError {
        StudyError::WriterStopped {
            path: display(&self.path),
            message,
        }
    }

    fn send(&self, msg: Msg) -> Result<(), StudyError> {
        if let Some(message) = self.failure.lock().ok().and_then(|f| f.clone()) {
            return Err(self.stopped(message));
        }
        let sender = self
            .sender
            .as_ref()
            .ok_or_else(|| self.stopped("closed".into()))?;
        sender.send(msg).map_err(|_| {
            let message = self
                .failure
                .lock()
                .ok()
                .and_then(|f| f.clone())
                .unwrap_or_else(|| "the writer thread exited".to_string());
            self.stopped(message)
        })
    }

    /// Inserts `trials` as RUNNING (one transaction, after everything queued before) and
    /// returns their ids and numbers, in order.
    pub fn start_trials(&self, trials: Vec<NewTrial>) -> Result<Vec<TrialHandle>, StudyError> {
        let (reply, answer) = mpsc::channel();
        let trials = trials
            .into_iter()
            .map(|t| Started {
                params: t.params,
                system_attrs: serialise(t.system_attrs),
            })
            .collect();
        self.send(Msg::Start(trials, reply))?;
        answer
            .recv()
            .map_err(|_| self.stopped("the writer thread exited".into()))?
            .map_err(|message| self.stopped(message))
    }

    /// Queues the outcomes of started trials.
    pub fn finish_trials(&self, outcomes: Vec<TrialOutcome>) -> Result<(), StudyError> {
        let outcomes = outcomes
            .into_iter()
            .map(|o| Finished {
                trial_id: o.trial_id,
                state: o.state,
                value: o.value,
                user_attrs: serialise(o.user_attrs),
            })
            .collect();
        self.send(Msg::Finish(outcomes))
    }

    /// Queues finished trials to insert.
    pub fn append_trials(&self, records: Vec<TrialRecord>) -> Result<(), StudyError> {
        let records = records
            .into_iter()
            .map(|r| Appended {
                params: r.params,
                state: r.state,
                value: r.value,
                user_attrs: serialise(r.user_attrs),
                system_attrs: serialise(r.system_attrs),
            })
            .collect();
        self.send(Msg::Append(records))
    }

    /// Waits until everything queued is committed; returns the counters so far.
    pub fn flush(&self) -> Result<WriterStats, StudyError> {
        let (reply, answer) = mpsc::channel();
        self.send(Msg::Flush(reply))?;
        answer
            .recv()
            .map_err(|_| self.stopped("the writer thread exited".into()))?
            .map_err(|message| self.stopped(message))
    }

    /// Commits everything queued and stops the thread.
    pub fn close(mut self) -> Result<WriterStats, StudyError> {
        let stats = self.flush();
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        stats
    }
}

impl Drop for StudyWriter {
    fn drop(&mut self) {
        self.sender = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn open_study(
    conn: &mut Connection,
    path: &Path,
    options: &StudyOptions,
) -> Result<OpenReport, StudyError> {
    let err = sqlite_error(path);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let existing: Option<i64> = tx
        .query_row(
            "SELECT study_id FROM studies WHERE study_name = ?1",
            [&options.name],
            |row| row.get(0),
        )
        .optional()
        .map_err(&err)?;
    let report = match existing {
        None => {
            tx.execute(
                "INSERT INTO studies (study_name) VALUES (?1)",
                [&options.name],
            )
            .map_err(&err)?;
            let study_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO study_directions (direction, study_id, objective) VALUES (?1, ?2, 0)",
                (options.direction.as_str(), study_id),
            )
            .map_err(&err)?;
            for (key, value) in &options.user_attrs {
                tx.execute(
                    "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (?1, ?2, ?3)",
                    (study_id, key, value.dumps()),
                )
                .map_err(&err)?;
            }
            OpenReport {
                study_id,
                created: true,
                failed_running: 0,
            }
        }
        Some(study_id) => {
            if options.mode == OpenMode::Create {
                let trials: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM trials WHERE study_id = ?1",
                        [study_id],
                        |row| row.get(0),
                    )
                    .map_err(&err)?;
                return Err(StudyError::StudyExists {
                    path: display(path),
                    name: options.name.clone(),
                    trials: trials as usize,
                });
            }
            let mut stmt = tx
                .prepare(
                    "SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective",
                )
                .map_err(&err)?;
            let directions: Vec<String> = stmt
                .query_map([study_id], |row| row.get(0))
                .map_err(&err)?
                .collect::<Result<_, _>>()
                .map_err(&err)?;
            drop(stmt);
            if directions != [options.direction.as_str()] {
                return Err(StudyError::DirectionMismatch {
                    path: display(path),
                    name: options.name.clone(),
                    found: directions.join(", ").to_lowercase(),
                    expected: options.direction.as_str().to_lowercase(),
                });
            }
            let mut failed_running = 0;
            if options.mode == OpenMode::Resume {
                let now = now_text();
                let ids: Vec<i64> = {
                    let mut stmt = tx
                        .prepare(
                            "SELECT trial_id FROM trials WHERE study_id = ?1 AND state = 'RUNNING'",
                        )
                        .map_err(&err)?;
                    stmt.query_map([study_id], |row| row.get(0))
                        .map_err(&err)?
                        .collect::<Result<_, _>>()
                        .map_err(&err)?
                };
                for trial_id in &ids {
                    tx.execute(
                        "UPDATE trials SET state = 'FAIL', datetime_complete = ?1 WHERE trial_id = ?2",
                        (&now, trial_id),
                    )
                    .map_err(&err)?;
                    tx.execute(
                        "INSERT OR REPLACE INTO trial_user_attributes (trial_id, key, value_json) VALUES (?1, 'fail_reason', ?2)",
                        (
                            trial_id,
                            JsonValue::Str(
                                "left RUNNING by an interrupted run; failed on resume".into(),
                            )
                            .dumps(),
                        ),
                    )
                    .map_err(&err)?;
                }
                failed_running = ids.len();
            }
            OpenReport {
                study_id,
                created: false,
                failed_running,
            }
        }
    };
    tx.commit().map_err(&err)?;
    Ok(report)
}

struct Worker {
    conn: Connection,
    path: PathBuf,
    failure: Arc<Mutex<Option<String>>>,
    state: WriterState,
}

struct WriterState {
    study_id: i64,
    /// `(param name, distribution JSON)`, the order of every trial's internal values.
    columns: Vec<(String, String)>,
    stats: WriterStats,
}

impl Worker {
    fn run(mut self, receiver: Receiver<Msg>) {
        let mut lookahead: Option<Msg> = None;
        loop {
            let msg = match lookahead.take() {
                Some(msg) => msg,
                None => match receiver.recv() {
                    Ok(msg) => msg,
                    Err(_) => return,
                },
            };
            let failed = self.failure.lock().ok().and_then(|f| f.clone());
            match msg {
                Msg::Start(trials, reply) => {
                    let result = match failed {
                        Some(message) => Err(message),
                        None => self.transaction(|w, tx| w.start(tx, &trials)),
                    };
                    let _ = reply.send(result);
                }
                Msg::Flush(reply) => {
                    let _ = reply.send(match failed {
                        Some(message) => Err(message),
                        None => Ok(self.state.stats),
                    });
                }
                first @ (Msg::Finish(_) | Msg::Append(_)) => {
                    // Merge every queued Finish/Append into one transaction.
                    let mut batch = vec![first];
                    let mut trials = 0;
                    loop {
                        if trials >= TRIALS_PER_TRANSACTION {
                            break;
                        }
                        match receiver.try_recv() {
                            Ok(msg @ (Msg::Finish(_) | Msg::Append(_))) => {
                                trials += match &msg {
                                    Msg::Finish(o) => o.len(),
                                    Msg::Append(r) => r.len(),
                                    _ => 0,
                                };
                                batch.push(msg);
                            }
                            Ok(other) => {
                                lookahead = Some(other);
                                break;
                            }
                            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                        }
                    }
                    if failed.is_some() {
                        continue;
                    }
                    let result = self.transaction(|w, tx| {
                        for msg in &batch {
                            match msg {
                                Msg::Finish(outcomes) => w.finish(tx, outcomes)?,
                                Msg::Append(records) => w.append(tx, records)?,
                                _ => {}
                            }
                        }
                        Ok(())
                    });
                    if let Err(message) = result
                        && let Ok(mut f) = self.failure.lock()
                    {
                        *f = Some(message);
                    }
                }
            }
        }
    }

    fn transaction<T>(
        &mut self,
        body: impl FnOnce(&mut WriterState, &Transaction<'_>) -> Result<T, rusqlite::Error>,
    ) -> Result<T, String> {
        let result: Result<T, rusqlite::Error> = (|| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = body(&mut self.state, &tx)?;
            tx.commit()?;
            Ok(value)
        })();
        match result {
            Ok(value) => {
                self.state.stats.transactions += 1;
                Ok(value)
            }
            Err(e) => {
                let message = format!("{}: {e}", display(&self.path));
                if let Ok(mut f) = self.failure.lock() {
                    *f = Some(message.clone());
                }
                Err(message)
            }
        }
    }
}

impl WriterState {
    fn next_number(&self, tx: &Transaction<'_>) -> Result<i64, rusqlite::Error> {
        tx.query_row(
            "SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1",
            [self.study_id],
            |row| row.get(0),
        )
    }

    fn insert_params(
        &self,
        tx: &Transaction<'_>,
        trial_id: i64,
        params: &[f64],
    ) -> Result<(), rusqlite::Error> {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for ((name, json), value) in self.columns.iter().zip(params) {
            stmt.execute((trial_id, name, value, json))?;
        }
        Ok(())
    }

    fn start(
        &mut self,
        tx: &Transaction<'_>,
        trials: &[Started],
    ) -> Result<Vec<TrialHandle>, rusqlite::Error> {
        let first = self.next_number(tx)?;
        let now = now_text();
        let mut handles = Vec::with_capacity(trials.len());
        let mut rows = AttrRows::default();
        for (number, trial) in (first..).zip(trials) {
            tx.prepare_cached(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) VALUES (?1, ?2, 'RUNNING', ?3, NULL)",
            )?
            .execute((number, self.study_id, &now))?;
            let trial_id = tx.last_insert_rowid();
            self.insert_params(tx, trial_id, &trial.params)?;
            rows.system(trial_id, &trial.system_attrs);
            handles.push(TrialHandle { trial_id, number });
        }
        rows.insert(tx)?;
        self.stats.trials_started += trials.len() as u64;
        Ok(handles)
    }

    fn finish(
        &mut self,
        tx: &Transaction<'_>,
        outcomes: &[Finished],
    ) -> Result<(), rusqlite::Error> {
        let now = now_text();
        let mut rows = AttrRows::default();
        for outcome in outcomes {
            let changed = tx
                .prepare_cached(
                    "UPDATE trials SET state = ?1, datetime_complete = ?2 WHERE trial_id = ?3 AND state = 'RUNNING'",
                )?
                .execute((outcome.state.as_str(), &now, outcome.trial_id))?;
            if changed == 0 {
                self.stats.outcomes_dropped += 1;
                continue;
            }
            insert_value(tx, outcome.trial_id, outcome.value)?;
            rows.user(outcome.trial_id, &outcome.user_attrs);
            self.stats.trials_finished += 1;
        }
        rows.insert(tx)
    }

    fn append(
        &mut self,
        tx: &Transaction<'_>,
        records: &[Appended],
    ) -> Result<(), rusqlite::Error> {
        let first = self.next_number(tx)?;
        let now = now_text();
        let mut rows = AttrRows::default();
        for (number, record) in (first..).zip(records) {
            let complete = record.state.is_finished().then_some(&now);
            tx.prepare_cached(
                "INSERT INTO trials (number, study_id, state, datetime_start, datetime_complete) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute((number, self.study_id, record.state.as_str(), &now, complete))?;
            let trial_id = tx.last_insert_rowid();
            self.insert_params(tx, trial_id, &record.params)?;
            insert_value(tx, trial_id, record.value)?;
            rows.user(trial_id, &record.user_attrs);
            rows.system(trial_id, &record.system_attrs);
        }
        rows.insert(tx)?;
        self.stats.trials_appended += records.len() as u64;
        Ok(())
    }
}

/// One `trial_values` row: `FINITE`, or NULL with `INF_POS` / `INF_NEG`; nothing for NaN.
fn insert_value(
    tx: &Transaction<'_>,
    trial_id: i64,
    value: Option<f64>,
) -> Result<(), rusqlite::Error> {
    let Some(value) = value.filter(|v| !v.is_nan()) else {
        return Ok(());
    };
    let (stored, kind) = if value == f64::INFINITY {
        (None, "INF_POS")
    } else if value == f64::NEG_INFINITY {
        (None, "INF_NEG")
    } else {
        (Some(value), "FINITE")
    };
    tx.prepare_cached(
        "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?1, 0, ?2, ?3)",
    )?
    .execute((trial_id, stored, kind))?;
    Ok(())
}

/// Attribute rows of one message, inserted with multi-row statements.
#[derive(Default)]
struct AttrRows<'a> {
    user: Vec<(i64, &'a str, &'a str)>,
    system: Vec<(i64, &'a str, &'a str)>,
}

impl<'a> AttrRows<'a> {
    fn user(&mut self, trial_id: i64, attrs: &'a Attrs) {
        self.user.extend(
            attrs
                .iter()
                .map(|(k, v)| (trial_id, k.as_str(), v.as_str())),
        );
    }

    fn system(&mut self, trial_id: i64, attrs: &'a Attrs) {
        self.system.extend(
            attrs
                .iter()
                .map(|(k, v)| (trial_id, k.as_str(), v.as_str())),
        );
    }

    fn insert(&self, tx: &Transaction<'_>) -> Result<(), rusqlite::Error> {
        insert_rows(tx, "trial_user_attributes", &self.user)?;
        insert_rows(tx, "trial_system_attributes", &self.system)
    }
}

/// Rows per multi-row INSERT (3 bound values each, well under SQLite's 32,766 variables).
const ROWS_PER_INSERT: usize = 128;

fn insert_rows(
    tx: &Transaction<'_>,
    table: &str,
    rows: &[(i64, &str, &str)],
) -> Result<(), rusqlite::Error> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let placeholders = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let mut stmt = tx.prepare_cached(&format!(
            "INSERT INTO {table} (trial_id, key, value_json) VALUES {placeholders}"
        ))?;
        let mut i = 1;
        for (trial_id, key, value) in chunk {
            stmt.raw_bind_parameter(i, trial_id)?;
            stmt.raw_bind_parameter(i + 1, key)?;
            stmt.raw_bind_parameter(i + 2, value)?;
            i += 3;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}
