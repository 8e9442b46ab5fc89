//! Versioned schema migrations: the SQL files under `db/migrations/`, embedded at build time,
//! applied in order and recorded in `etrading_migrations` (version, name, sha256, time).
//!
//! Applying is idempotent: migrations already recorded are skipped, after checking that their
//! embedded SQL still has the recorded checksum (an applied migration must never change; a
//! change is a new migration). Everything happens in one transaction under an advisory lock,
//! so two processes migrating at once apply each migration exactly once.
//!
//! Only [`migrate`] runs DDL, as the role that owns the tables. Promotion and rollback run as
//! a role that does not own them ([`grant_promoter`] gives it exactly what they need) and only
//! [`check_schema`]: a database that is not at the newest migration is refused, with the
//! command to run, and never changed.

use sha2::{Digest, Sha256};
use tokio_postgres::{Client, GenericClient, Row};

use super::PgError;

/// One migration: `db/migrations/{version:04}_{name}.sql`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migration {
    /// 1, 2, ...: applied in this order.
    pub version: i32,
    /// The file name's words (`active_configs`).
    pub name: &'static str,
    /// The SQL, run as one batch.
    pub sql: &'static str,
}

impl Migration {
    /// The file name under `db/migrations/`.
    pub fn file_name(&self) -> String {
        format!("{:04}_{}.sql", self.version, self.name)
    }

    /// SHA-256 of the SQL, lowercase hex.
    pub fn sha256(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Every migration, in version order (a test checks this list against the folder).
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "active_configs",
    sql: include_str!("../../migrations/0001_active_configs.sql"),
}];

/// Lock key of the migration transaction (`pg_advisory_xact_lock`): "etrading" in ASCII.
const MIGRATION_LOCK: i64 = 0x6574_7261_6469_6e67;

/// What [`migrate`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Versions applied by this call.
    pub applied: Vec<i32>,
    /// Versions found already applied.
    pub already_applied: Vec<i32>,
}

/// Checks the rows of `etrading_migrations` against the embedded migrations: every recorded
/// one must be known with the same checksum. Returns the recorded versions.
fn verify_applied(rows: &[Row]) -> Result<Vec<i32>, PgError> {
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let mut applied = Vec::with_capacity(rows.len());
    for row in rows {
        let version: i32 = row.get(0);
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == version) else {
            return Err(PgError::SchemaTooNew {
                found: rows.last().map_or(version, |r| r.get(0)),
                known,
            });
        };
        let recorded: String = row.get(2);
        let carried = m.sha256();
        if recorded != carried {
            return Err(PgError::MigrationChanged {
                version,
                name: row.get(1),
                applied: recorded,
                carried,
            });
        }
        applied.push(version);
    }
    Ok(applied)
}

/// Checks, without changing anything, that the database is at exactly the newest migration
/// this build carries. Promotion, rollback and `configs` call it instead of migrating: a
/// missing or older schema is [`PgError::NotMigrated`] or [`PgError::SchemaBehind`] (run
/// `etrading db migrate` as the owning role), a newer one [`PgError::SchemaTooNew`].
pub async fn check_schema(client: &impl GenericClient) -> Result<(), PgError> {
    let rows = client
        .query(
            "SELECT version, name, sha256 FROM etrading_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| PgError::query("reading etrading_migrations", &e))?;
    let applied = verify_applied(&rows)?;
    if MIGRATIONS.iter().any(|m| !applied.contains(&m.version)) {
        return Err(PgError::SchemaBehind {
            found: applied.last().copied().unwrap_or(0),
            needed: MIGRATIONS.last().map_or(0, |m| m.version),
        });
    }
    Ok(())
}

/// Brings the database to the newest migration.
pub async fn migrate(client: &mut Client) -> Result<MigrationReport, PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::statement("starting the migration transaction", &e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|e| PgError::statement("taking the migration lock", &e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS etrading_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             sha256     text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| PgError::statement("creating etrading_migrations", &e))?;
    let rows = tx
        .query(
            "SELECT version, name, sha256 FROM etrading_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(|e| PgError::statement("reading etrading_migrations", &e))?;
    let mut report = MigrationReport {
        already_applied: verify_applied(&rows)?,
        ..MigrationReport::default()
    };
    for m in MIGRATIONS {
        if report.already_applied.contains(&m.version) {
            continue;
        }
        let context = format!("applying migration {}", m.file_name());
        tx.batch_execute(m.sql)
            .await
            .map_err(|e| PgError::statement(context.clone(), &e))?;
        tx.execute(
            "INSERT INTO etrading_migrations (version, name, sha256) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &m.sha256()],
        )
        .await
        .map_err(|e| PgError::statement(context.clone(), &e))?;
        report.applied.push(m.version);
    }
    tx.commit()
        .await
        .map_err(|e| PgError::statement("committing the migrations", &e))?;
    Ok(report)
}
