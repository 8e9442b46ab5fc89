//! PostgreSQL: schema migrations, `active_configs`, `config_history`, promotion and rollback.
//!
//! The live bot reads its configuration from `active_configs` (one row per strategy, the query
//! is [`LIVE_BOT_QUERY`]); `config_history` keeps every promotion and rollback ever made and
//! refuses updates and deletes. Every change is one transaction that takes a per-strategy lock,
//! appends a history row and replaces the active row, so concurrent promotions of a strategy
//! are serialised and a reader sees either the old config or the new one, never a mix
//! (docs/PROMOTION.md).
//!
//! - [`connect`]: a client from a URL or `key=value` string, over TLS as its `sslmode` and
//!   `sslrootcert` say ([`tls`]), with session timeouts ([`SESSION_DEFAULTS`]); errors name
//!   the server and the role, never the password.
//! - [`migrate`]: the versioned migrations under `db/migrations/`, applied idempotently by the
//!   owning role; [`check_schema`], what every other command runs instead.
//! - [`grants`]: the promoter role's privileges (no ownership, no DDL).
//! - [`candidate`]: the trial to promote, read from an Optuna study file through
//!   [`crate::study::StudyFile`], its refusals and the comparison of its stored metrics with a
//!   re-run.
//! - [`store`]: promote, roll back, list.

pub mod candidate;
pub mod grants;
pub mod migrate;
pub mod store;
pub mod tls;

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::Host;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

pub use crate::study::TrialState;
pub use candidate::{
    MetricMismatch, Policy, PromotionCandidate, Refusal, StudyInfo, Tolerance, best_eligible,
    compare_metrics, number_json, read_study, refusals,
};
pub use grants::{PROMOTER_PRIVILEGES, grant_promoter, promoter_grants, quote_ident};
pub use migrate::{MIGRATIONS, Migration, MigrationReport, check_schema, migrate};
pub use store::{
    ChangeOutcome, ConfigRecord, ConfigRow, LIVE_BOT_QUERY, OosMetrics, PendingChange,
    active_config, begin_promotion, begin_rollback, history, list_active, promote, rollback,
};
pub use tls::{SslMode, TlsDefaults, TlsSettings};

/// What can go wrong talking to PostgreSQL. Messages are one line and never hold a password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string: {reason}")]
    InvalidUrl {
        /// Why (never the string itself, which may hold a password).
        reason: String,
    },
    /// The server cannot be reached or refuses the session (unknown role, bad password, no
    /// such database).
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Connect {
        /// `postgresql://role@host:port/dbname`, without the password.
        target: String,
        /// The server's or the operating system's reason.
        reason: String,
    },
    /// A statement failed.
    #[error("{context}: {reason}")]
    Query {
        /// What was being done (`appending to config_history`).
        context: String,
        /// The server's message and SQLSTATE.
        reason: String,
    },
    /// A statement waited longer than `lock_timeout` for a lock another session holds.
    #[error(
        "{context}: {reason}: another session held a lock longer than lock_timeout (a \
         promotion of the same strategy, a migration or an open transaction); nothing was \
         written, retry once it is done"
    )]
    LockTimeout {
        /// What was being done.
        context: String,
        /// The server's message and SQLSTATE.
        reason: String,
    },
    /// The role lacks a privilege.
    #[error(
        "{context}: {reason}: `etrading db migrate` runs as the role that owns the tables; \
         promote as a role granted with `etrading db migrate --grant-promoter ROLE`"
    )]
    PermissionDenied {
        /// What was being done.
        context: String,
        /// The server's message and SQLSTATE.
        reason: String,
    },
    /// The database holds no etrading schema yet.
    #[error(
        "the database has no etrading tables yet; run `etrading db migrate` as the role that \
         will own them"
    )]
    NotMigrated,
    /// The database is at an older migration than this etrading needs.
    #[error(
        "the database is at migration {found}, this etrading needs migration {needed}; run \
         `etrading db migrate` as the role that owns the tables"
    )]
    SchemaBehind {
        /// Newest version applied (0: none).
        found: i32,
        /// Newest version embedded.
        needed: i32,
    },
    /// A role cannot be given the promoter privileges.
    #[error("role {role:?} cannot be a promoter: {reason}")]
    NotAPromoter {
        /// The role.
        role: String,
        /// Why.
        reason: String,
    },
    /// An applied migration differs from the one this build carries.
    #[error(
        "migration {version} ({name}) was applied with sha256 {applied} but this build carries \
         sha256 {carried}: migrations must never change once applied; add a new one"
    )]
    MigrationChanged {
        /// Version number.
        version: i32,
        /// Its name.
        name: String,
        /// Checksum recorded in `etrading_migrations`.
        applied: String,
        /// Checksum of the embedded SQL.
        carried: String,
    },
    /// The database was migrated by a newer etrading.
    #[error(
        "the database is at migration {found}, newer than the newest this etrading knows \
         ({known}); use a newer etrading"
    )]
    SchemaTooNew {
        /// Newest version applied.
        found: i32,
        /// Newest version embedded.
        known: i32,
    },
    /// No active config for the strategy.
    #[error("strategy {strategy_id:?} has no active config")]
    NoActiveConfig {
        /// The strategy.
        strategy_id: String,
    },
    /// A rollback names a version that does not exist.
    #[error("strategy {strategy_id:?} has no version {version} (its versions: 1 to {newest})")]
    NoSuchVersion {
        /// The strategy.
        strategy_id: String,
        /// Version asked for.
        version: i32,
        /// Newest version.
        newest: i32,
    },
    /// A rollback would change nothing.
    #[error(
        "strategy {strategy_id:?}: version {version} is the config already active (version \
         {active} carries it)"
    )]
    AlreadyActive {
        /// The strategy.
        strategy_id: String,
        /// Version asked for.
        version: i32,
        /// The active version.
        active: i32,
    },
    /// A rollback without `--to` when there is no earlier promotion.
    #[error(
        "strategy {strategy_id:?}: no promotion before version {source_version} to roll back to"
    )]
    NothingToRollBack {
        /// The strategy.
        strategy_id: String,
        /// The version whose config is active.
        source_version: i32,
    },
    /// A config to promote is invalid (checked before touching the database).
    #[error("invalid config for {strategy_id:?}: {reason}")]
    InvalidConfig {
        /// The strategy.
        strategy_id: String,
        /// What is wrong.
        reason: String,
    },
}

impl PgError {
    /// Wraps a driver error raised while doing `context`: a lock timeout and a missing
    /// privilege say what to do, anything else is the server's reason as is.
    pub(crate) fn statement(context: impl Into<String>, e: &tokio_postgres::Error) -> PgError {
        let (context, reason) = (context.into(), one_line(e));
        match e.as_db_error().map(|db| db.code()) {
            Some(&SqlState::LOCK_NOT_AVAILABLE) => PgError::LockTimeout { context, reason },
            Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                PgError::PermissionDenied { context, reason }
            }
            _ => PgError::Query { context, reason },
        }
    }

    /// As [`PgError::statement`]; besides, a missing table means the database was never
    /// migrated.
    pub(crate) fn query(context: impl Into<String>, e: &tokio_postgres::Error) -> PgError {
        if e.as_db_error()
            .is_some_and(|db| db.code() == &SqlState::UNDEFINED_TABLE)
        {
            return PgError::NotMigrated;
        }
        PgError::statement(context, e)
    }
}

/// One line describing a driver error: the server's message and SQLSTATE, or the error and its
/// causes (`error connecting to server: Connection refused (os error 111)`).
pub fn one_line(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.replace('\n', " ")
}

/// The session limits every connection gets, unless the connection string's `options` sets
/// the same parameter (`options=-c lock_timeout=2s`, libpq's way): a statement runs at most a
/// minute, waits at most 10 s for a lock (a promotion blocked by another session's lock fails
/// with [`PgError::LockTimeout`] instead of hanging), and a transaction left idle is ended by
/// the server after a minute (its locks released).
pub const SESSION_DEFAULTS: &[(&str, &str)] = &[
    ("statement_timeout", "60s"),
    ("lock_timeout", "10s"),
    ("idle_in_transaction_session_timeout", "60s"),
];

/// The parameters a libpq `options` string sets (`-c name=value`, `-cname=value`,
/// `--name=value`; dashes in a name mean underscores), lowercase.
fn parameters_in_options(options: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut words = options.split_whitespace();
    while let Some(word) = words.next() {
        let assignment = if word == "-c" {
            words.next()
        } else {
            word.strip_prefix("--").or_else(|| word.strip_prefix("-c"))
        };
        if let Some((name, _)) = assignment.and_then(|a| a.split_once('=')) {
            names.push(name.replace('-', "_").to_lowercase());
        }
    }
    names
}

/// A parsed connection target: the driver's config, its TLS settings and a description
/// without the password.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: TlsSettings,
    description: String,
    /// `SET` statements for the [`SESSION_DEFAULTS`] the string does not set itself.
    session: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The driver's own Debug would show the connection parameters; only the description
        // (which has no password) is shown.
        f.debug_tuple("Target").field(&self.description).finish()
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.description)
    }
}

impl Target {
    /// Parses a `postgresql://` URL or a `key=value` string, its TLS settings from its own
    /// `sslmode` and `sslrootcert` alone (see [`Target::parse_with`]).
    pub fn parse(url: &str) -> Result<Target, PgError> {
        Target::parse_with(url, &TlsDefaults::default())
    }

    /// Parses a `postgresql://` URL or a `key=value` string. `sslmode` (default `prefer`) and
    /// `sslrootcert` come from the string, else from `defaults` (module [`tls`] says what
    /// each mode checks). A connect timeout of 10 s applies unless the string sets one, and
    /// the [`SESSION_DEFAULTS`] unless its `options` set them.
    pub fn parse_with(url: &str, defaults: &TlsDefaults) -> Result<Target, PgError> {
        let split = tls::split_tls_params(url);
        let mut config = Config::from_str(&split.rest).map_err(|e| PgError::InvalidUrl {
            reason: match std::error::Error::source(&e) {
                Some(s) => s.to_string(),
                None => e.to_string(),
            },
        })?;
        let tls = TlsSettings::resolve(
            split.sslmode.as_deref(),
            split.sslrootcert.as_deref(),
            defaults,
        )
        .map_err(|reason| PgError::InvalidUrl { reason })?;
        config.ssl_mode(tls.mode.driver());
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("etrading");
        }
        let description = describe(&config);
        let given = parameters_in_options(config.get_options().unwrap_or(""));
        let session = SESSION_DEFAULTS
            .iter()
            .filter(|(name, _)| !given.iter().any(|g| g == name))
            .map(|(name, value)| format!("SET {name} = '{value}';"))
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Target {
            config,
            tls,
            description,
            session,
        })
    }

    /// The driver config (holds the password: never print it).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// How the connection uses TLS.
    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }
}

/// `postgresql://role@host:port/dbname`, leaving out the password and every other option.
fn describe(config: &Config) -> String {
    let user = config.get_user().unwrap_or("(no role)");
    let ports = config.get_ports();
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .map(ToString::to_string)
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            })
            .collect()
    };
    let hosts: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            format!("{h}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{hosts}/{db}")
}

/// Connects to `target` (over TLS as its settings say), drives the connection on the current
/// tokio runtime and sets the session's [`SESSION_DEFAULTS`].
pub async fn connect(target: &Target) -> Result<Client, PgError> {
    let fail = |reason: String| PgError::Connect {
        target: target.description.clone(),
        reason,
    };
    let client = if target.tls.mode == SslMode::Disable {
        let (client, connection) = target
            .config
            .connect(NoTls)
            .await
            .map_err(|e| fail(connect_reason(target, &e)))?;
        tokio::spawn(async move {
            // A broken connection surfaces as an error on the client's next call.
            let _ = connection.await;
        });
        client
    } else {
        let tls = target.tls.connector().map_err(fail)?;
        let (client, connection) = target
            .config
            .connect(tls)
            .await
            .map_err(|e| fail(connect_reason(target, &e)))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    };
    if !target.session.is_empty() {
        client
            .batch_execute(&target.session)
            .await
            .map_err(|e| fail(format!("setting the session's timeouts: {}", one_line(&e))))?;
    }
    Ok(client)
}

/// The reason a connection failed, in the words a user acts on.
fn connect_reason(target: &Target, e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut innermost = e.to_string();
    let mut tls_error: Option<&rustls::Error> = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        innermost = s.to_string();
        tls_error = tls_error
            .or_else(|| s.downcast_ref::<rustls::Error>())
            .or_else(|| {
                s.downcast_ref::<std::io::Error>()
                    .and_then(|io| io.get_ref())
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            });
        source = s.source();
    }
    if let Some(tls_error) = tls_error {
        use rustls::CertificateError as C;
        return match tls_error {
            rustls::Error::InvalidCertificate(C::UnknownIssuer) => format!(
                "TLS: the server's certificate is not signed by a certificate of sslrootcert \
                 {} ({tls_error})",
                target
                    .tls
                    .root_cert
                    .as_deref()
                    .unwrap_or(std::path::Path::new("(none)"))
                    .display()
            ),
            rustls::Error::InvalidCertificate(
                C::NotValidForName | C::NotValidForNameContext { .. },
            ) => {
                format!(
                    "TLS: the server's certificate does not name the host connected to \
                     (sslmode=verify-full checks it; connect by a name the certificate carries): \
                     {tls_error}"
                )
            }
            rustls::Error::InvalidCertificate(_) => {
                format!("TLS: the server's certificate is refused: {tls_error}")
            }
            _ => format!("TLS handshake failed: {tls_error}"),
        };
    }
    if innermost == "server does not support TLS" {
        return format!(
            "the server does not offer TLS, and sslmode={} does not connect without it",
            target.tls.mode.name()
        );
    }
    let lower = innermost.to_lowercase();
    if lower.contains("connection refused") {
        format!("server unreachable ({innermost}); is PostgreSQL running and listening there?")
    } else if lower.contains("timeout") || lower.contains("timed out") {
        format!("server unreachable (no answer within the connect timeout: {innermost})")
    } else {
        innermost
    }
}
