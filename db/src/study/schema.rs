//! Opening a study file: pragmas, creating Optuna's tables and version rows in a new file, and
//! refusing a file whose schema revision is not the one we write.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{BUSY_TIMEOUT_MS, StudyError, display};

/// Optuna's DDL, byte for byte as `sqlite3 file .schema` prints a storage Optuna 5.0.0
/// created (SQLAlchemy's formatting, trailing spaces included).
const SCHEMA_SQL: &str = include_str!("schema.sql");

/// `alembic_version.version_num` of Optuna 5.0.0's RDB schema.
pub const ALEMBIC_VERSION: &str = "v3.2.0.a";
/// `version_info.schema_version`.
pub const SCHEMA_VERSION: i64 = 12;
/// `version_info.library_version`: the Optuna release whose schema this is.
pub const LIBRARY_VERSION: &str = "5.0.0";

pub(crate) fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> StudyError + '_ {
    move |error| StudyError::Sqlite {
        path: display(path),
        error,
    }
}

/// Opens (creating when absent) a study file for writing: WAL, `synchronous=NORMAL`,
/// `temp_store=MEMORY`, the busy timeout; creates the schema in an empty file (under the write
/// lock, so two processes creating the same file at once make it once) and checks it in an
/// existing one.
pub(crate) fn open_for_writing(path: &Path) -> Result<Connection, StudyError> {
    let err = sqlite_error(path);
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
        && !parent.exists()
    {
        std::fs::create_dir_all(parent).map_err(|e| StudyError::Url {
            url: display(path),
            message: format!("creating folder {}: {e}", parent.display()),
        })?;
    }
    let mut conn = Connection::open(path).map_err(&err)?;
    // 16 KiB pages for a new file (an existing file keeps its own; SQLite ignores this then):
    // a trial's ~60 attribute and param rows split and balance fewer B-tree pages, and the
    // WAL and its checkpoints write fewer, larger frames (measured: ~10% more trials/s).
    conn.execute_batch("PRAGMA page_size=16384;")
        .map_err(&err)?;
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(&err)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StudyError::Schema {
            path: display(path),
            what: format!("journal_mode stays {mode:?}, WAL could not be set"),
        });
    }
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA temp_store=MEMORY;")
        .map_err(&err)?;
    // Room for the writer's multi-row statements (a full and a last chunk per table).
    conn.set_prepared_statement_cache_capacity(64);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(&err)?;
    let has_tables: bool = tx
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies')",
            [],
            |row| row.get(0),
        )
        .map_err(&err)?;
    if has_tables {
        check_versions(&tx, path)?;
    } else {
        let any_table: bool = tx
            .query_row(
                "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table')",
                [],
                |row| row.get(0),
            )
            .map_err(&err)?;
        if any_table {
            return Err(StudyError::Schema {
                path: display(path),
                what: "the file holds tables but no `studies` table".to_string(),
            });
        }
        tx.execute_batch(SCHEMA_SQL).map_err(&err)?;
        tx.execute(
            "INSERT INTO version_info (version_info_id, schema_version, library_version) VALUES (1, ?1, ?2)",
            (SCHEMA_VERSION, LIBRARY_VERSION),
        )
        .map_err(&err)?;
        tx.execute(
            "INSERT INTO alembic_version (version_num) VALUES (?1)",
            [ALEMBIC_VERSION],
        )
        .map_err(&err)?;
    }
    tx.commit().map_err(&err)?;
    Ok(conn)
}

/// Opens an existing study file for reading (it must hold Optuna's schema).
pub(crate) fn open_for_reading(path: &Path) -> Result<Connection, StudyError> {
    let err = sqlite_error(path);
    if !path.is_file() {
        return Err(StudyError::NoFile {
            path: display(path),
        });
    }
    // Read-write with `query_only` where the file allows it: SQLite then tidies up on close
    // (the last connection to a WAL database removes its `-wal` and `-shm` files, which a
    // read-only connection cannot do), while no statement of this connection can write.
    // A file we may not write (a read-only mount, another user's file) is opened read-only.
    let conn = match Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(conn) => {
            conn.pragma_update(None, "query_only", true).map_err(&err)?;
            conn
        }
        Err(_) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(&err)?,
    };
    conn.busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS))
        .map_err(&err)?;
    let has_tables: bool = conn
        .query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'studies')",
            [],
            |row| row.get(0),
        )
        .map_err(&err)?;
    if !has_tables {
        return Err(StudyError::Schema {
            path: display(path),
            what: "no `studies` table".to_string(),
        });
    }
    check_versions(&conn, path)?;
    Ok(conn)
}

fn check_versions(conn: &Connection, path: &Path) -> Result<(), StudyError> {
    let err = sqlite_error(path);
    let alembic: Option<String> = conn
        .query_row("SELECT version_num FROM alembic_version", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(&err)?;
    if alembic.as_deref() != Some(ALEMBIC_VERSION) {
        return Err(StudyError::Schema {
            path: display(path),
            what: format!("alembic revision {alembic:?}"),
        });
    }
    let schema: Option<Option<i64>> = conn
        .query_row(
            "SELECT schema_version FROM version_info WHERE version_info_id = 1",
            [],
            |row| row.get(0),
        )
        .optional()
        .map_err(&err)?;
    if schema != Some(Some(SCHEMA_VERSION)) {
        return Err(StudyError::Schema {
            path: display(path),
            what: format!("schema version {:?}", schema.flatten()),
        });
    }
    Ok(())
}
