//! Versioned schema migrations: the SQL files under `db/migrations/`, embedded at build time,
//! applied in order and recorded in `etrading_migrations` (version, name, sha256, time).
//!
//! Applying is idempotent: migrations already recorded are skipped, after checking that their
//! embedded SQL still has the recorded checksum (an applied migration must never change; a
//! change is a new migration). Everything happens in one transaction under an advisory lock,
//! so two processes migrating at once apply each migration exactly once.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

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
    let known = MIGRATIONS.last().map_or(0, |m| m.version);
    let mut report = MigrationReport::default();
    for row in &rows {
        let version: i32 = row.get(0);
        let Some(m) = MIGRATIONS.iter().find(|m| m.version == version) else {
            return Err(PgError::SchemaTooNew {
                found: rows.last().map_or(version, |r| r.get(0)),
                known,
            });
        };
        let applied: String = row.get(2);
        let carried = m.sha256();
        if applied != carried {
            return Err(PgError::MigrationChanged {
                version,
                name: row.get(1),
                applied,
                carried,
            });
        }
        report.already_applied.push(version);
    }
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
