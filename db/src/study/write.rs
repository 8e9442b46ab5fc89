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
use crate::lock::{LockKind, WriterLock, study_lock_path};

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
    /// Keys of `user_attrs` that say what the trials were computed from (data hash, spec,
    /// engine version, precision...): reopening a study whose stored value of one of them
    /// differs is refused ([`StudyError::ResumeMismatch`]), so one study never mixes trials
    /// of different inputs. A key the stored study lacks (a study Optuna created, or an older
    /// one) is not checked.
    pub identity: Vec<String>,
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

/// Attributes serialised on the caller's thread, so the writer thread only binds text: every
/// key and JSON value back to back in one buffer (two allocations per trial instead of two per
/// attribute, which the writer thread would otherwise spend its time freeing).
#[derive(Default)]
struct Attrs {
    text: String,
    /// Per attribute, where its key ends and where its value ends in `text`.
    ends: Vec<(usize, usize)>,
}

impl Attrs {
    /// `(key, value as JSON text)`, in order.
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        self.ends.iter().map(move |&(key_end, value_end)| {
            let pair = (&self.text[start..key_end], &self.text[key_end..value_end]);
            start = value_end;
            pair
        })
    }
}

fn serialise(attrs: Vec<(String, JsonValue)>) -> Attrs {
    let mut out = Attrs {
        text: String::with_capacity(attrs.iter().map(|(k, _)| k.len() + 24).sum()),
        ends: Vec::with_capacity(attrs.len()),
    };
    for (key, value) in &attrs {
        out.text.push_str(key);
        let key_end = out.text.len();
        value.write_to(&mut out.text);
        out.ends.push((key_end, out.text.len()));
    }
    out
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
    /// Held while the writer lives: exclusive for [`OpenMode::Resume`], shared otherwise.
    _lock: WriterLock,
}

impl StudyWriter {
    /// Opens (creating when needed) the file at `path` and the study `options.name`.
    pub fn open(
        path: &Path,
        options: StudyOptions,
    ) -> Result<(StudyWriter, OpenReport), StudyError> {
        let mut conn = open_for_writing(path)?;
        // A resume fails the RUNNING trials it finds, which is only right when no other live
        // process is running them: it must be the study's only writer. Creating and joining
        // writers run beside each other, never beside a resume.
        let kind = match options.mode {
            OpenMode::Resume => LockKind::Exclusive,
            OpenMode::Create | OpenMode::Join => LockKind::Shared,
        };
        let lock = WriterLock::acquire(
            &study_lock_path(path, &options.name),
            &format!("study {:?} in {}", options.name, display(path)),
            kind,
        )?;
        let report = open_study(&mut conn, path, &options)?;
        let checkpointer = Checkpointer::start(path);
        if checkpointer.is_some() {
            conn.execute_batch("PRAGMA wal_autocheckpoint=0;")
                .map_err(sqlite_error(path))?;
        }
        let columns: Vec<(String, String)> = options
            .params
            .iter()
            .map(|(name, d)| (name.clone(), distribution_json(d)))
            .collect();
        let (sender, receiver) = mpsc::sync_channel(QUEUE_MESSAGES);
        let failure = Arc::new(Mutex::new(None));
        let worker = Worker {
            conn,
            checkpointer,
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
                _lock: lock,
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
            for key in &options.identity {
                let Some((_, value)) = options.user_attrs.iter().find(|(k, _)| k == key) else {
                    continue;
                };
                let stored: Option<String> = tx
                    .query_row(
                        "SELECT value_json FROM study_user_attributes WHERE study_id = ?1 AND key = ?2",
                        (study_id, key),
                        |row| row.get(0),
                    )
                    .optional()
                    .map_err(&err)?;
                let expected = value.dumps();
                if let Some(stored) = stored.filter(|stored| *stored != expected) {
                    return Err(StudyError::ResumeMismatch {
                        path: display(path),
                        name: options.name.clone(),
                        key: key.clone(),
                        stored: abbreviate(&stored),
                        this_run: abbreviate(&expected),
                    });
                }
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

/// Checkpoints the WAL on its own thread and connection (`PRAGMA wal_checkpoint(PASSIVE)`
/// after each commit, coalesced), so that copying WAL frames into the database and its fsync
/// do not stall the writer thread; the writer's connection has auto-checkpoints off then.
/// Without it (its connection or thread could not start) SQLite's auto-checkpoint stays on.
struct Checkpointer {
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    fn start(path: &Path) -> Option<Checkpointer> {
        let conn = Connection::open(path).ok()?;
        conn.busy_timeout(std::time::Duration::from_millis(super::BUSY_TIMEOUT_MS))
            .ok()?;
        let (wake, woken) = mpsc::sync_channel::<()>(1);
        let thread = std::thread::Builder::new()
            .name("study-checkpoint".to_string())
            .spawn(move || {
                while woken.recv().is_ok() {
                    // Best effort: a failed or partial checkpoint is retried after the next
                    // commit, and the last connection to close checkpoints everything.
                    let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                }
            })
            .ok()?;
        Some(Checkpointer {
            wake: Some(wake),
            thread: Some(thread),
        })
    }

    fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Worker {
    conn: Connection,
    checkpointer: Option<Checkpointer>,
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
                if let Some(c) = &self.checkpointer {
                    c.wake();
                }
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
    /// The next trial number of the study and the next `trial_id` of the file. Both are read
    /// under the write lock (every write transaction is `BEGIN IMMEDIATE`), so they stay dense
    /// and unique with several writers; the ids are the ones SQLite itself would assign
    /// (`max(rowid) + 1`), given explicitly so that trials go in by multi-row statements.
    fn next_ids(&self, tx: &Transaction<'_>) -> Result<(i64, i64), rusqlite::Error> {
        let number = tx
            .prepare_cached("SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1")?
            .query_row([self.study_id], |row| row.get(0))?;
        let trial_id = tx
            .prepare_cached("SELECT COALESCE(MAX(trial_id), 0) + 1 FROM trials")?
            .query_row([], |row| row.get(0))?;
        Ok((number, trial_id))
    }

    /// `trial_params` rows of consecutive trials from `first_id`, one per column.
    fn insert_params<'a>(
        &self,
        tx: &Transaction<'_>,
        first_id: i64,
        params: impl Iterator<Item = &'a [f64]>,
    ) -> Result<(), rusqlite::Error> {
        let mut rows = Vec::new();
        for (trial_id, values) in (first_id..).zip(params) {
            rows.extend(
                self.columns
                    .iter()
                    .zip(values)
                    .map(|((name, json), value)| (trial_id, name.as_str(), *value, json.as_str())),
            );
        }
        insert_many(
            tx,
            &PARAMS,
            &rows,
            |stmt, i, &(trial_id, name, value, json)| {
                stmt.raw_bind_parameter(i, trial_id)?;
                stmt.raw_bind_parameter(i + 1, name)?;
                stmt.raw_bind_parameter(i + 2, value)?;
                stmt.raw_bind_parameter(i + 3, json)
            },
        )
    }

    fn start(
        &mut self,
        tx: &Transaction<'_>,
        trials: &[Started],
    ) -> Result<Vec<TrialHandle>, rusqlite::Error> {
        let (first_number, first_id) = self.next_ids(tx)?;
        let now = now_text();
        let handles: Vec<TrialHandle> = (0..trials.len() as i64)
            .map(|k| TrialHandle {
                trial_id: first_id + k,
                number: first_number + k,
            })
            .collect();
        insert_many(tx, &TRIALS_RUNNING, &handles, |stmt, i, h| {
            stmt.raw_bind_parameter(i, h.trial_id)?;
            stmt.raw_bind_parameter(i + 1, h.number)?;
            stmt.raw_bind_parameter(i + 2, self.study_id)?;
            stmt.raw_bind_parameter(i + 3, &now)
        })?;
        self.insert_params(tx, first_id, trials.iter().map(|t| t.params.as_slice()))?;
        let mut rows = AttrRows::default();
        for (h, trial) in handles.iter().zip(trials) {
            rows.system(h.trial_id, &trial.system_attrs);
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
        let mut values = Vec::with_capacity(outcomes.len());
        let mut update = tx.prepare_cached(
            "UPDATE trials SET state = ?1, datetime_complete = ?2 WHERE trial_id = ?3 AND state = 'RUNNING'",
        )?;
        for outcome in outcomes {
            let changed = update.execute((outcome.state.as_str(), &now, outcome.trial_id))?;
            if changed == 0 {
                self.stats.outcomes_dropped += 1;
                continue;
            }
            values.extend(value_row(outcome.trial_id, outcome.value));
            rows.user(outcome.trial_id, &outcome.user_attrs);
            self.stats.trials_finished += 1;
        }
        drop(update);
        insert_values(tx, &values)?;
        rows.insert(tx)
    }

    fn append(
        &mut self,
        tx: &Transaction<'_>,
        records: &[Appended],
    ) -> Result<(), rusqlite::Error> {
        let (first_number, first_id) = self.next_ids(tx)?;
        let now = now_text();
        let numbered: Vec<(i64, i64, &Appended)> = (0..records.len() as i64)
            .zip(records)
            .map(|(k, r)| (first_id + k, first_number + k, r))
            .collect();
        insert_many(
            tx,
            &TRIALS_FINISHED,
            &numbered,
            |stmt, i, &(trial_id, number, r)| {
                stmt.raw_bind_parameter(i, trial_id)?;
                stmt.raw_bind_parameter(i + 1, number)?;
                stmt.raw_bind_parameter(i + 2, self.study_id)?;
                stmt.raw_bind_parameter(i + 3, r.state.as_str())?;
                stmt.raw_bind_parameter(i + 4, &now)?;
                stmt.raw_bind_parameter(i + 5, r.state.is_finished().then_some(&now))
            },
        )?;
        self.insert_params(tx, first_id, records.iter().map(|r| r.params.as_slice()))?;
        let values: Vec<ValueRow> = numbered
            .iter()
            .filter_map(|&(trial_id, _, r)| value_row(trial_id, r.value))
            .collect();
        insert_values(tx, &values)?;
        let mut rows = AttrRows::default();
        for &(trial_id, _, record) in &numbered {
            rows.user(trial_id, &record.user_attrs);
            rows.system(trial_id, &record.system_attrs);
        }
        rows.insert(tx)?;
        self.stats.trials_appended += records.len() as u64;
        Ok(())
    }
}

/// `(trial_id, value or NULL, value_type)` of one `trial_values` row.
type ValueRow = (i64, Option<f64>, &'static str);

/// The `trial_values` row of a value: `FINITE`, or NULL with `INF_POS` / `INF_NEG`; none for
/// NaN or no value.
fn value_row(trial_id: i64, value: Option<f64>) -> Option<ValueRow> {
    let value = value.filter(|v| !v.is_nan())?;
    Some(if value == f64::INFINITY {
        (trial_id, None, "INF_POS")
    } else if value == f64::NEG_INFINITY {
        (trial_id, None, "INF_NEG")
    } else {
        (trial_id, Some(value), "FINITE")
    })
}

fn insert_values(tx: &Transaction<'_>, rows: &[ValueRow]) -> Result<(), rusqlite::Error> {
    insert_many(tx, &VALUES, rows, |stmt, i, &(trial_id, value, kind)| {
        stmt.raw_bind_parameter(i, trial_id)?;
        stmt.raw_bind_parameter(i + 1, value)?;
        stmt.raw_bind_parameter(i + 2, kind)
    })
}

/// Attribute rows of one message, inserted with multi-row statements.
#[derive(Default)]
struct AttrRows<'a> {
    user: Vec<(i64, &'a str, &'a str)>,
    system: Vec<(i64, &'a str, &'a str)>,
}

impl<'a> AttrRows<'a> {
    fn user(&mut self, trial_id: i64, attrs: &'a Attrs) {
        self.user
            .extend(attrs.iter().map(|(k, v)| (trial_id, k, v)));
    }

    fn system(&mut self, trial_id: i64, attrs: &'a Attrs) {
        self.system
            .extend(attrs.iter().map(|(k, v)| (trial_id, k, v)));
    }

    fn insert(&self, tx: &Transaction<'_>) -> Result<(), rusqlite::Error> {
        let bind = |stmt: &mut rusqlite::Statement<'_>, i, row: &(i64, &str, &str)| {
            stmt.raw_bind_parameter(i, row.0)?;
            stmt.raw_bind_parameter(i + 1, row.1)?;
            stmt.raw_bind_parameter(i + 2, row.2)
        };
        insert_many(tx, &USER_ATTRS, &self.user, bind)?;
        insert_many(tx, &SYSTEM_ATTRS, &self.system, bind)
    }
}

/// One multi-row INSERT: the statement's head and one row's `VALUES` tuple with its number of
/// bound values. `OR FAIL` rather than the default `ABORT`: a failing statement then needs no
/// statement journal (SQLite otherwise copies every page a multi-row statement touches, to
/// undo just that statement), and any failure rolls the whole transaction back anyway.
struct MultiInsert {
    head: &'static str,
    row: &'static str,
    width: usize,
}

const TRIALS_RUNNING: MultiInsert = MultiInsert {
    head: "INSERT OR FAIL INTO trials (trial_id, number, study_id, state, datetime_start, datetime_complete) VALUES ",
    row: "(?, ?, ?, 'RUNNING', ?, NULL)",
    width: 4,
};
const TRIALS_FINISHED: MultiInsert = MultiInsert {
    head: "INSERT OR FAIL INTO trials (trial_id, number, study_id, state, datetime_start, datetime_complete) VALUES ",
    row: "(?, ?, ?, ?, ?, ?)",
    width: 6,
};
const PARAMS: MultiInsert = MultiInsert {
    head: "INSERT OR FAIL INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES ",
    row: "(?, ?, ?, ?)",
    width: 4,
};
const VALUES: MultiInsert = MultiInsert {
    head: "INSERT OR FAIL INTO trial_values (trial_id, objective, value, value_type) VALUES ",
    row: "(?, 0, ?, ?)",
    width: 3,
};
const USER_ATTRS: MultiInsert = MultiInsert {
    head: "INSERT OR FAIL INTO trial_user_attributes (trial_id, key, value_json) VALUES ",
    row: "(?, ?, ?)",
    width: 3,
};
const SYSTEM_ATTRS: MultiInsert = MultiInsert {
    head: "INSERT OR FAIL INTO trial_system_attributes (trial_id, key, value_json) VALUES ",
    row: "(?, ?, ?)",
    width: 3,
};

/// Rows per multi-row INSERT (at most 6 bound values each, well under SQLite's 32,766
/// variables). Full chunks share one cached statement per table.
const ROWS_PER_INSERT: usize = 256;

/// Inserts `rows` by multi-row statements of up to [`ROWS_PER_INSERT`] rows; `bind` binds one
/// row's `width` values from the given 1-based index.
fn insert_many<R>(
    tx: &Transaction<'_>,
    insert: &MultiInsert,
    rows: &[R],
    bind: impl Fn(&mut rusqlite::Statement<'_>, usize, &R) -> Result<(), rusqlite::Error>,
) -> Result<(), rusqlite::Error> {
    let mut sql = String::new();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        sql.clear();
        sql.push_str(insert.head);
        for k in 0..chunk.len() {
            if k > 0 {
                sql.push_str(", ");
            }
            sql.push_str(insert.row);
        }
        let mut stmt = tx.prepare_cached(&sql)?;
        for (k, row) in chunk.iter().enumerate() {
            bind(&mut stmt, 1 + k * insert.width, row)?;
        }
        stmt.raw_execute()?;
    }
    Ok(())
}

/// A stored JSON value for an error message: at most 60 characters.
fn abbreviate(json: &str) -> String {
    match json.char_indices().nth(60) {
        Some((cut, _)) => format!("{}...", &json[..cut]),
        None => json.to_string(),
    }
}

/// Sets the user attribute `key` of study `name` in the file at `path` to `value`, replacing
/// what it held: for a result computed from the finished trials, such as the best trial's
/// deflated Sharpe ratio. One transaction; a study that does not exist is an error (nothing
/// is created).
pub fn set_study_user_attr(
    path: &Path,
    name: &str,
    key: &str,
    value: &JsonValue,
) -> Result<(), StudyError> {
    // The id as every reader finds it (its error lists the file's studies).
    let study_id = super::StudyFile::open(path)?.study_id(name)?;
    let err = sqlite_error(path);
    let mut conn = open_for_writing(path)?;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    tx.execute(
        "DELETE FROM study_user_attributes WHERE study_id = ?1 AND key = ?2",
        (study_id, key),
    )
    .map_err(&err)?;
    tx.execute(
        "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (?1, ?2, ?3)",
        (study_id, key, value.dumps()),
    )
    .map_err(&err)?;
    tx.commit().map_err(&err)
}
