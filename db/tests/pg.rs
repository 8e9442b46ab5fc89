//! PostgreSQL promotion against a real server: a throwaway cluster (`pg/cluster.rs`) started
//! once for this binary, one database per test. Also the study-file side of promotion
//! (reading trials in Optuna's schema, refusals, the re-run comparison), which needs no server.

#[path = "pg/cluster.rs"]
mod cluster;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use etrading_db::pg::{
    self, ConfigRecord, OosMetrics, PgError, Policy, PromotionCandidate, Refusal, Target,
    Tolerance, TrialState,
};
use etrading_db::study::Direction;
use etrading_kernels::spec::{MarginMode, ParamValue};
use serde_json::{Value, json};
use tokio_postgres::Client;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A new database `name` on the cluster, migrated; its URL and a client.
async fn fresh_db(name: &str) -> (String, Client) {
    let c = cluster::cluster();
    let admin = connect(&c.url("postgres")).await;
    recreate(&admin, name).await;
    let url = c.url(name);
    let mut client = connect(&url).await;
    pg::migrate(&mut client).await.unwrap();
    (url, client)
}

/// Creates database `name` (dropping a leftover one).
async fn recreate(admin: &Client, name: &str) {
    for sql in [
        format!("DROP DATABASE IF EXISTS {name}"),
        format!("CREATE DATABASE {name}"),
    ] {
        admin.batch_execute(&sql).await.unwrap();
    }
}

async fn connect(url: &str) -> Client {
    pg::connect(&Target::parse(url).unwrap()).await.unwrap()
}

/// A config of `strategy` from trial `trial` (leverage and objective differ per trial).
fn record(strategy: &str, trial: i64) -> ConfigRecord {
    let leverage = 1.0 + trial as f64;
    ConfigRecord {
        strategy_id: strategy.into(),
        spec_text: format!("[strategy]\nid = \"{strategy}\"\n"),
        spec_json: json!({"strategy": {"id": strategy}}),
        params: json!({"rsi_window": 14 + trial, "leverage": leverage}),
        symbols: vec!["BTCUSDT".into(), "XRPUSDT".into()],
        bar_interval: "1h".into(),
        leverage,
        margin_mode: if trial % 2 == 0 {
            MarginMode::Cross
        } else {
            MarginMode::Isolated
        },
        max_position_size: 0.25,
        max_concurrent_positions: 2,
        leverage_caps: BTreeMap::from([("XRPUSDT".into(), 2.0)]),
        symbol_leverage: BTreeMap::from([
            ("BTCUSDT".into(), leverage),
            ("XRPUSDT".into(), leverage.min(2.0)),
        ]),
        resolved: json!({"risk": {"stop_loss": 0.05}}),
        study_name: "s1".into(),
        study_id: 1,
        trial_id: 100 + trial,
        trial_number: trial,
        objective_name: "calmar".into(),
        objective_value: Some(1.0 + trial as f64 / 10.0),
        oos: OosMetrics {
            apr: Some(0.3),
            max_drawdown: Some(0.1),
            calmar: Some(3.0),
            trades: Some(42),
        },
        metrics: json!({"n_trades": 42, "total_return": 0.5}),
        rerun_metrics: Some(json!({"n_trades": 42, "total_return": 0.5})),
        data_hash: "ab".repeat(32),
        engine_version: "0.1.0".into(),
        talib_version: "0.4.0".into(),
        engine_commit: "0123456789abcdef0123456789abcdef01234567".into(),
        forced: Vec::new(),
        force_reason: None,
        promoted_by: "tester".into(),
    }
}

/// `(version, action, source_version, previous_version)` of every history row of `strategy`.
async fn history_of(client: &Client, strategy: &str) -> Vec<(i32, String, i32, Option<i32>)> {
    pg::history(client, Some(strategy))
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.version, r.action, r.source_version, r.previous_version))
        .collect()
}

/// Checks that `strategy` has exactly one active row, at `version`, carrying the config of
/// `trial`, and that it equals its history row.
async fn check_active(client: &Client, strategy: &str, version: i32, trial: i64) {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM active_configs WHERE strategy_id = $1",
            &[&strategy],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1, "{strategy}: active rows");
    let active = pg::active_config(client, strategy).await.unwrap().unwrap();
    assert_eq!(active.version, version, "{strategy}: active version");
    assert_eq!(active.trial_number, trial, "{strategy}: active trial");
    assert_eq!(active.leverage, 1.0 + trial as f64);
    let in_history = pg::history(client, Some(strategy))
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.version == version)
        .unwrap();
    assert_eq!(
        active, in_history,
        "{strategy}: active row differs from its history row"
    );
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await
        .unwrap()
        .get(0)
}

/// The tables of `client`'s database (schema `public`), by name.
async fn tables(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Migrations

#[test]
fn migration_list_matches_the_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let listed: Vec<String> = pg::MIGRATIONS.iter().map(|m| m.file_name()).collect();
    assert_eq!(files, listed, "db/migrations/ and pg::MIGRATIONS differ");
    for (i, m) in pg::MIGRATIONS.iter().enumerate() {
        assert_eq!(
            m.version,
            i as i32 + 1,
            "versions are 1, 2, ... without gaps"
        );
        assert_eq!(
            m.sql,
            std::fs::read_to_string(dir.join(m.file_name())).unwrap()
        );
    }
}

#[tokio::test]
async fn migrate_is_idempotent_recorded_and_safe_to_race() {
    let c = cluster::cluster();
    let admin = connect(&c.url("postgres")).await;
    recreate(&admin, "t_migrate").await;
    let url = c.url("t_migrate");
    // Two processes migrating a fresh database at once: each migration applied exactly once.
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    let (ra, rb) = tokio::join!(pg::migrate(&mut a), pg::migrate(&mut b));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let all: Vec<i32> = pg::MIGRATIONS.iter().map(|m| m.version).collect();
    let mut applied = [ra.applied.clone(), rb.applied.clone()].concat();
    applied.sort();
    assert_eq!(applied, all, "each migration applied once: {ra:?} {rb:?}");
    // Again: nothing to do.
    let again = pg::migrate(&mut a).await.unwrap();
    assert!(again.applied.is_empty());
    assert_eq!(again.already_applied, all);
    let rows = a
        .query(
            "SELECT version, name, sha256 FROM etrading_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), pg::MIGRATIONS.len());
    for (row, m) in rows.iter().zip(pg::MIGRATIONS) {
        assert_eq!(row.get::<_, i32>(0), m.version);
        assert_eq!(row.get::<_, String>(1), m.name);
        assert_eq!(row.get::<_, String>(2), m.sha256());
    }
    // An applied migration whose text changed is refused, and so is a newer schema.
    a.execute(
        "UPDATE etrading_migrations SET sha256 = 'x' WHERE version = 1",
        &[],
    )
    .await
    .unwrap();
    let e = pg::migrate(&mut a).await.unwrap_err();
    assert!(
        matches!(e, PgError::MigrationChanged { version: 1, .. }),
        "{e}"
    );
    a.execute(
        "UPDATE etrading_migrations SET sha256 = $1 WHERE version = 1",
        &[&pg::MIGRATIONS[0].sha256()],
    )
    .await
    .unwrap();
    a.execute(
        "INSERT INTO etrading_migrations (version, name, sha256) VALUES (999, 'future', 'f')",
        &[],
    )
    .await
    .unwrap();
    let e = pg::migrate(&mut a).await.unwrap_err();
    assert!(matches!(e, PgError::SchemaTooNew { found: 999, .. }), "{e}");
}

#[tokio::test]
async fn reading_an_unmigrated_database_says_to_migrate() {
    let c = cluster::cluster();
    let admin = connect(&c.url("postgres")).await;
    recreate(&admin, "t_bare").await;
    let client = connect(&c.url("t_bare")).await;
    let e = pg::list_active(&client).await.unwrap_err();
    assert!(matches!(e, PgError::NotMigrated), "{e}");
    assert!(e.to_string().contains("etrading db migrate"), "{e}");
}

#[tokio::test]
async fn promotion_never_migrates_and_refuses_a_missing_or_older_schema() {
    let c = cluster::cluster();
    let admin = connect(&c.url("postgres")).await;
    recreate(&admin, "t_no_ddl").await;
    let mut client = connect(&c.url("t_no_ddl")).await;
    // No schema: promotion, rollback and the check say to migrate, and create nothing.
    let e = pg::promote(&mut client, &record("s", 1)).await.unwrap_err();
    assert!(matches!(e, PgError::NotMigrated), "{e}");
    assert!(e.to_string().contains("run `etrading db migrate`"), "{e}");
    let e = pg::rollback(&mut client, "s", None, "ops", None)
        .await
        .unwrap_err();
    assert!(matches!(e, PgError::NotMigrated), "{e}");
    let e = pg::check_schema(&client).await.unwrap_err();
    assert!(matches!(e, PgError::NotMigrated), "{e}");
    assert_eq!(tables(&client).await, Vec::<String>::new());

    // An older schema (the newest migration's record removed, as if this build carried one
    // more): refused with the command to run, and left as it was.
    pg::migrate(&mut client).await.unwrap();
    pg::check_schema(&client).await.unwrap();
    let newest = pg::MIGRATIONS.last().unwrap().version;
    client
        .execute(
            "DELETE FROM etrading_migrations WHERE version = $1",
            &[&newest],
        )
        .await
        .unwrap();
    let before = tables(&client).await;
    let behind = |e: &PgError| {
        matches!(e, PgError::SchemaBehind { found, needed } if *found == newest - 1 && *needed == newest)
            && e.to_string().contains(&format!(
                "is at migration {}, this etrading needs migration {newest}; run `etrading db \
                 migrate` as the role that owns the tables",
                newest - 1
            ))
    };
    let e = pg::promote(&mut client, &record("s", 1)).await.unwrap_err();
    assert!(behind(&e), "{e}");
    let e = pg::rollback(&mut client, "s", None, "ops", None)
        .await
        .unwrap_err();
    assert!(behind(&e), "{e}");
    let e = pg::check_schema(&client).await.unwrap_err();
    assert!(behind(&e), "{e}");
    assert_eq!(tables(&client).await, before);
    assert_eq!(count(&client, "config_history").await, 0);
    assert_eq!(
        count(&client, "etrading_migrations").await,
        newest as i64 - 1
    );
    // A changed migration is refused by the check as by migrate.
    client
        .execute(
            "INSERT INTO etrading_migrations (version, name, sha256) VALUES ($1, 'x', 'changed')",
            &[&newest],
        )
        .await
        .unwrap();
    let e = pg::promote(&mut client, &record("s", 1)).await.unwrap_err();
    assert!(matches!(e, PgError::MigrationChanged { .. }), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Roles: the owner migrates, a promoter role promotes

#[tokio::test]
async fn a_promoter_role_promotes_and_rolls_back_and_cannot_rewrite_history() {
    let (_, mut owner) = fresh_db("t_roles").await;
    let c = cluster::cluster();
    let role = "t_roles_promoter";
    owner
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             DROP ROLE IF EXISTS t_roles_bare; CREATE ROLE t_roles_bare LOGIN; \
             DROP ROLE IF EXISTS t_roles_member; CREATE ROLE t_roles_member LOGIN; \
             GRANT {} TO t_roles_member",
            cluster::ADMIN
        ))
        .await
        .unwrap();
    // Who cannot be a promoter: a superuser (here also the owner), a member of the owning
    // role, a role that does not exist.
    for (r, expect) in [
        (cluster::ADMIN, "is a superuser"),
        (
            "t_roles_member",
            "owns the tables (or is a member of their owner)",
        ),
        ("t_roles_nobody", "no such role"),
    ] {
        let e = pg::grant_promoter(&mut owner, r).await.unwrap_err();
        assert!(
            matches!(e, PgError::NotAPromoter { .. }) && e.to_string().contains(expect),
            "{r}: {e}"
        );
    }
    // A role without the grants is told how to get them.
    let mut bare = connect(&c.url_as("t_roles_bare", "unused", "t_roles")).await;
    let e = pg::promote(&mut bare, &record("s", 1)).await.unwrap_err();
    assert!(
        matches!(e, PgError::PermissionDenied { .. })
            && e.to_string()
                .contains("permission denied for table etrading_migrations")
            && e.to_string()
                .contains("etrading db migrate --grant-promoter ROLE"),
        "{e}"
    );

    // Granting twice is granting once.
    pg::grant_promoter(&mut owner, role).await.unwrap();
    pg::grant_promoter(&mut owner, role).await.unwrap();
    let mut p = connect(&c.url_as(role, "unused", "t_roles")).await;
    pg::check_schema(&p).await.unwrap();
    pg::promote(&mut p, &record("s", 1)).await.unwrap();
    let second = pg::promote(&mut p, &record("s", 2)).await.unwrap();
    assert_eq!((second.version, second.previous_version), (2, Some(1)));
    let r = pg::rollback(&mut p, "s", None, "ops", Some("as the promoter"))
        .await
        .unwrap();
    assert_eq!((r.version, r.source_version), (3, 1));
    check_active(&p, "s", 3, 1).await;
    assert_eq!(pg::list_active(&p).await.unwrap().len(), 1);

    // What it cannot do: DDL, disabling or replacing the append-only trigger, changing or
    // removing history, removing active rows, touching the migrations, bypassing triggers.
    let history = pg::history(&p, None).await.unwrap();
    for (sql, expect) in [
        (
            "DROP TABLE config_history CASCADE",
            "must be owner of table config_history",
        ),
        (
            "ALTER TABLE config_history DISABLE TRIGGER config_history_no_update_delete",
            "must be owner of table config_history",
        ),
        (
            "ALTER TABLE config_history DISABLE TRIGGER ALL",
            "must be owner of table config_history",
        ),
        (
            "DROP TRIGGER config_history_no_update_delete ON config_history",
            "must be owner of relation config_history",
        ),
        (
            "CREATE OR REPLACE FUNCTION etrading_config_history_append_only() RETURNS trigger \
             LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$",
            "permission denied for schema public",
        ),
        (
            "ALTER FUNCTION etrading_config_history_append_only() RENAME TO gone",
            "must be owner of function etrading_config_history_append_only",
        ),
        (
            "ALTER TABLE active_configs ADD COLUMN x integer",
            "must be owner of table active_configs",
        ),
        (
            "DROP TABLE active_configs",
            "must be owner of table active_configs",
        ),
        (
            "UPDATE config_history SET leverage = 9",
            "permission denied for table config_history",
        ),
        (
            "DELETE FROM config_history",
            "permission denied for table config_history",
        ),
        (
            "TRUNCATE config_history",
            "permission denied for table config_history",
        ),
        (
            "DELETE FROM active_configs",
            "permission denied for table active_configs",
        ),
        (
            "TRUNCATE active_configs",
            "permission denied for table active_configs",
        ),
        (
            "UPDATE etrading_migrations SET sha256 = 'x'",
            "permission denied for table etrading_migrations",
        ),
        (
            "SET session_replication_role = replica",
            "permission denied to set parameter \"session_replication_role\"",
        ),
        (
            "CREATE TABLE config_history_copy (i integer)",
            "permission denied for schema public",
        ),
    ] {
        let e = p.batch_execute(sql).await.unwrap_err();
        let text = pg::one_line(&e);
        assert!(text.contains(expect), "{sql}: {text}");
    }
    assert_eq!(pg::history(&p, None).await.unwrap(), history);
    check_active(&owner, "s", 3, 1).await;
}

#[test]
fn the_promoter_grants_are_documented() {
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROMOTION.md"))
            .unwrap();
    for sql in pg::promoter_grants("public", "promoter") {
        assert!(
            doc.contains(&format!("{sql};")),
            "docs/PROMOTION.md must show the grant `{sql};`"
        );
    }
    assert_eq!(pg::quote_ident(r#"a"b"#), r#""a""b""#);
}

// ---------------------------------------------------------------------------------------------
// Promotion, history, rollback

#[tokio::test]
async fn promote_then_promote_again_keeps_both_in_history() {
    let (_, mut client) = fresh_db("t_promote").await;
    let first = pg::promote(&mut client, &record("rsi_ema", 3))
        .await
        .unwrap();
    assert_eq!((first.version, first.previous_version), (1, None));
    check_active(&client, "rsi_ema", 1, 3).await;
    let row = pg::active_config(&client, "rsi_ema")
        .await
        .unwrap()
        .unwrap();
    let r = record("rsi_ema", 3);
    assert_eq!(row.margin_mode, "isolated");
    assert_eq!(row.symbols, r.symbols);
    assert_eq!(row.params, r.params);
    assert_eq!(row.leverage_caps, json!({"XRPUSDT": 2.0}));
    assert_eq!(row.symbol_leverage, json!({"BTCUSDT": 4.0, "XRPUSDT": 2.0}));
    assert_eq!(row.oos, r.oos);
    assert_eq!(row.data_hash, r.data_hash);
    assert_eq!(row.engine_commit, r.engine_commit);
    assert_eq!(row.spec_text, r.spec_text);
    assert_eq!(row.promoted_by, "tester");
    assert_eq!(row.forced, json!([]));

    let second = pg::promote(&mut client, &record("rsi_ema", 5))
        .await
        .unwrap();
    assert_eq!((second.version, second.previous_version), (2, Some(1)));
    check_active(&client, "rsi_ema", 2, 5).await;
    assert_eq!(
        history_of(&client, "rsi_ema").await,
        vec![
            (1, "promote".into(), 1, None),
            (2, "promote".into(), 2, Some(1))
        ]
    );
    // Another strategy has its own versions.
    let other = pg::promote(&mut client, &record("macd", 1)).await.unwrap();
    assert_eq!(other.version, 1);
    assert_eq!(pg::list_active(&client).await.unwrap().len(), 2);
    assert_eq!(count(&client, "config_history").await, 3);
}

#[tokio::test]
async fn forced_promotion_records_its_reason_and_needs_one() {
    let (_, mut client) = fresh_db("t_forced").await;
    let mut r = record("rsi_ema", 1);
    r.forced = vec!["the trial was liquidated (1 liquidations)".into()];
    let e = pg::promote(&mut client, &r).await.unwrap_err();
    assert!(e.to_string().contains("without a reason"), "{e}");
    r.force_reason = Some("liquidation on a data glitch, checked by hand".into());
    pg::promote(&mut client, &r).await.unwrap();
    let row = pg::active_config(&client, "rsi_ema")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.forced,
        json!(["the trial was liquidated (1 liquidations)"])
    );
    assert_eq!(row.force_reason, r.force_reason);
    // The table refuses a forced row without a reason even from plain SQL.
    let e = client
        .execute(
            "INSERT INTO config_history (strategy_id, version, action, source_version, \
             spec_text, spec_json, params, symbols, bar_interval, leverage, margin_mode, \
             max_position_size, max_concurrent_positions, leverage_caps, symbol_leverage, \
             resolved, study_name, study_id, trial_id, trial_number, objective_name, metrics, \
             data_hash, engine_version, talib_version, engine_commit, forced, promoted_by) \
             VALUES ('x', 1, 'promote', 1, '', '{}', '{}', '{A}', '1h', 1, 'cross', 0.5, 1, \
             '{}', '{}', '{}', 's', 1, 1, 0, 'o', '{}', 'h', 'e', 't', 'c', '[\"r\"]', 'me')",
            &[],
        )
        .await
        .unwrap_err();
    assert!(pg::one_line(&e).contains("check constraint"), "{e}");
}

#[tokio::test]
async fn invalid_configs_are_refused_before_writing() {
    let (_, mut client) = fresh_db("t_invalid").await;
    let check = |mutate: fn(&mut ConfigRecord), expect: &'static str| {
        let mut r = record("rsi_ema", 1);
        mutate(&mut r);
        (r, expect)
    };
    for (r, expect) in [
        check(|r| r.leverage = 0.5, "leverage 0.5"),
        check(|r| r.max_position_size = 1.5, "max_position_size 1.5"),
        check(|r| r.symbols.clear(), "no symbols"),
        check(|r| r.params = json!([1]), "params is not a JSON object"),
        check(|r| r.promoted_by = " ".into(), "promoted_by"),
    ] {
        let e = pg::promote(&mut client, &r).await.unwrap_err();
        assert!(
            e.to_string().contains(expect),
            "{e} should mention {expect}"
        );
    }
    assert_eq!(count(&client, "config_history").await, 0);
}

#[tokio::test]
async fn rollback_walks_back_through_promotions() {
    let (_, mut client) = fresh_db("t_rollback").await;
    for trial in [10, 20, 30] {
        pg::promote(&mut client, &record("s", trial)).await.unwrap();
    }
    // v4 restores v2, v5 restores v1, then there is nothing older.
    let r = pg::rollback(&mut client, "s", None, "ops", Some("v3 misbehaves"))
        .await
        .unwrap();
    assert_eq!(
        (r.version, r.source_version, r.previous_version),
        (4, 2, Some(3))
    );
    check_active(&client, "s", 4, 20).await;
    let active = pg::active_config(&client, "s").await.unwrap().unwrap();
    assert_eq!(active.note.as_deref(), Some("v3 misbehaves"));
    assert_eq!(active.promoted_by, "ops");
    let r = pg::rollback(&mut client, "s", None, "ops", None)
        .await
        .unwrap();
    assert_eq!((r.version, r.source_version), (5, 1));
    check_active(&client, "s", 5, 10).await;
    let e = pg::rollback(&mut client, "s", None, "ops", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PgError::NothingToRollBack {
                source_version: 1,
                ..
            }
        ),
        "{e}"
    );
    // --to: any version; one that carries the active config is refused.
    let r = pg::rollback(&mut client, "s", Some(3), "ops", None)
        .await
        .unwrap();
    assert_eq!((r.version, r.source_version), (6, 3));
    check_active(&client, "s", 6, 30).await;
    let e = pg::rollback(&mut client, "s", Some(3), "ops", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PgError::AlreadyActive {
                version: 3,
                active: 6,
                ..
            }
        ),
        "{e}"
    );
    let e = pg::rollback(&mut client, "s", Some(6), "ops", None)
        .await
        .unwrap_err();
    assert!(matches!(e, PgError::AlreadyActive { .. }), "{e}");
    let e = pg::rollback(&mut client, "s", Some(99), "ops", None)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            PgError::NoSuchVersion {
                version: 99,
                newest: 6,
                ..
            }
        ),
        "{e}"
    );
    // --to a rollback row restores what that row carried.
    let r = pg::rollback(&mut client, "s", Some(5), "ops", None)
        .await
        .unwrap();
    assert_eq!((r.version, r.source_version), (7, 1));
    check_active(&client, "s", 7, 10).await;
    let e = pg::rollback(&mut client, "nope", None, "ops", None)
        .await
        .unwrap_err();
    assert!(matches!(e, PgError::NoActiveConfig { .. }), "{e}");
    assert_eq!(
        history_of(&client, "s").await,
        vec![
            (1, "promote".into(), 1, None),
            (2, "promote".into(), 2, Some(1)),
            (3, "promote".into(), 3, Some(2)),
            (4, "rollback".into(), 2, Some(3)),
            (5, "rollback".into(), 1, Some(4)),
            (6, "rollback".into(), 3, Some(5)),
            (7, "rollback".into(), 1, Some(6)),
        ]
    );
    // A promotion after rollbacks continues the numbering.
    let p = pg::promote(&mut client, &record("s", 40)).await.unwrap();
    assert_eq!((p.version, p.previous_version), (8, Some(7)));
}

#[tokio::test]
async fn history_is_append_only() {
    let (_, mut client) = fresh_db("t_append_only").await;
    pg::promote(&mut client, &record("s", 1)).await.unwrap();
    for sql in [
        "UPDATE config_history SET leverage = 9",
        "DELETE FROM config_history",
        "TRUNCATE config_history CASCADE",
    ] {
        let e = client.batch_execute(sql).await.unwrap_err();
        assert!(
            pg::one_line(&e).contains("config_history is append-only"),
            "{sql}: {}",
            pg::one_line(&e)
        );
    }
    check_active(&client, "s", 1, 1).await;
}

// ---------------------------------------------------------------------------------------------
// Concurrency and interruption

#[tokio::test]
async fn concurrent_promotions_of_one_strategy_are_serialised() {
    let (url, mut a) = fresh_db("t_concurrent").await;
    let observer = connect(&url).await;
    // A holds the strategy's lock with its promotion written but not committed.
    let pending = pg::begin_promotion(&mut a, &record("s", 1)).await.unwrap();
    assert_eq!(pending.outcome.version, 1);
    // B promotes the same strategy at the same moment: it must wait for A.
    let url_b = url.clone();
    let b = tokio::spawn(async move {
        let mut b = connect(&url_b).await;
        pg::promote(&mut b, &record("s", 2)).await
    });
    let mut waited = false;
    for _ in 0..100 {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = 't_concurrent' AND \
                 wait_event_type = 'Lock' AND wait_event = 'advisory'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            waited = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(waited, "B never waited on the strategy lock");
    assert!(!b.is_finished(), "B finished while A held the lock");
    // Nothing of A is visible yet.
    assert_eq!(count(&observer, "config_history").await, 0);
    pending.commit().await.unwrap();
    let b = b.await.unwrap().unwrap();
    assert_eq!((b.version, b.previous_version), (2, Some(1)));
    check_active(&observer, "s", 2, 2).await;

    // A burst of promotions from separate sessions: distinct consecutive versions, one
    // active row, the newest.
    let mut tasks = tokio::task::JoinSet::new();
    for trial in 10..18 {
        let url = url.clone();
        tasks.spawn(async move {
            let mut c = connect(&url).await;
            pg::promote(&mut c, &record("s", trial)).await.unwrap()
        });
    }
    let mut versions: Vec<i32> = tasks.join_all().await.iter().map(|o| o.version).collect();
    versions.sort();
    assert_eq!(versions, (3..=10).collect::<Vec<i32>>());
    let history = history_of(&observer, "s").await;
    assert_eq!(history.len(), 10);
    for (i, (version, _, _, previous)) in history.iter().enumerate() {
        assert_eq!(*version, i as i32 + 1);
        assert_eq!(
            *previous,
            (i > 0).then_some(i as i32),
            "each links to the one before"
        );
    }
    let newest = pg::history(&observer, Some("s"))
        .await
        .unwrap()
        .pop()
        .unwrap();
    check_active(&observer, "s", 10, newest.trial_number).await;
}

#[tokio::test]
async fn an_interrupted_promotion_leaves_nothing_visible() {
    let (url, mut client) = fresh_db("t_interrupted").await;
    let live = connect(&url).await;
    let admin = connect(&url).await;
    pg::promote(&mut client, &record("s", 1)).await.unwrap();

    // 1. The promoting process dies after writing, before committing (its session is killed).
    let mut doomed = connect(&url).await;
    let pid: i32 = doomed
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let pending = pg::begin_promotion(&mut doomed, &record("s", 2))
        .await
        .unwrap();
    assert_eq!(pending.outcome.version, 2);
    let seen = live
        .query_one(pg::LIVE_BOT_QUERY, &[&"s"])
        .await
        .unwrap()
        .get::<_, i32>("version");
    assert_eq!(
        seen, 1,
        "the live bot sees the old config during the promotion"
    );
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap()
        .get(0);
    assert!(killed);
    assert!(
        pending.commit().await.is_err(),
        "a killed session cannot commit"
    );
    assert_eq!(count(&live, "config_history").await, 1);
    check_active(&live, "s", 1, 1).await;

    // 2. The promotion is abandoned (dropped) mid-way.
    let mut quitter = connect(&url).await;
    let pending = pg::begin_promotion(&mut quitter, &record("s", 3))
        .await
        .unwrap();
    drop(pending);
    // The same session works on, and sees nothing of the abandoned promotion.
    assert_eq!(count(&quitter, "config_history").await, 1);
    check_active(&live, "s", 1, 1).await;

    // 3. A rollback interrupted the same way.
    pg::promote(&mut client, &record("s", 4)).await.unwrap();
    let pending = pg::begin_rollback(&mut quitter, "s", None, "ops", None)
        .await
        .unwrap();
    pending.abort().await.unwrap();
    check_active(&live, "s", 2, 4).await;
    // Numbering has no hole: the next change is version 3.
    let r = pg::rollback(&mut client, "s", None, "ops", None)
        .await
        .unwrap();
    assert_eq!((r.version, r.source_version), (3, 1));
}

// ---------------------------------------------------------------------------------------------
// Session limits

/// The value of setting `name` in `client`'s session, as `SHOW` prints it.
async fn setting(client: &Client, name: &str) -> String {
    client
        .query_one(&format!("SHOW {name}"), &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn a_promotion_blocked_by_a_lock_times_out_instead_of_hanging() {
    let (url, mut owner) = fresh_db("t_timeouts").await;
    let c = cluster::cluster();
    // The defaults, and the connection string's options overriding some of them (a URL's
    // `-c name=value`, a key=value string's `--name=value`; deadlock_timeout is another one).
    assert_eq!(setting(&owner, "statement_timeout").await, "1min");
    assert_eq!(setting(&owner, "lock_timeout").await, "10s");
    assert_eq!(
        setting(&owner, "idle_in_transaction_session_timeout").await,
        "1min"
    );
    let mut blocked = connect(&format!("{url}?options=-c%20lock_timeout%3D300ms")).await;
    assert_eq!(setting(&blocked, "lock_timeout").await, "300ms");
    assert_eq!(setting(&blocked, "statement_timeout").await, "1min");
    let kv = connect(&format!(
        "host=127.0.0.1 port={} user={} password={} dbname=t_timeouts \
         options='--lock-timeout=2s -c deadlock_timeout=3s'",
        c.port,
        cluster::ADMIN,
        c.password
    ))
    .await;
    assert_eq!(setting(&kv, "lock_timeout").await, "2s");
    assert_eq!(setting(&kv, "deadlock_timeout").await, "3s");
    assert_eq!(setting(&kv, "statement_timeout").await, "1min");

    // Another session holds active_configs (a stuck psql, a migration): the promotion gives up
    // after lock_timeout with one clear line, and writes nothing.
    pg::promote(&mut owner, &record("s", 1)).await.unwrap();
    let holder = connect(&url).await;
    holder
        .batch_execute("BEGIN; LOCK TABLE active_configs IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let check = |e: &PgError, context: &str| {
        let text = e.to_string();
        assert!(
            matches!(e, PgError::LockTimeout { context: c, .. } if c == context),
            "{text}"
        );
        assert!(
            text.contains("canceling statement due to lock timeout (SQLSTATE 55P03)")
                && text.contains("another session held a lock longer than lock_timeout")
                && text.contains("nothing was written")
                && !text.contains('\n'),
            "{text}"
        );
    };
    let started = std::time::Instant::now();
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        pg::promote(&mut blocked, &record("s", 2)),
    )
    .await
    .expect("the promotion hung on the lock")
    .unwrap_err();
    let waited = started.elapsed();
    check(&e, "reading active_configs");
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(5),
        "gave up after {waited:?}"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();

    // Another promotion of the same strategy holds the strategy's lock for too long.
    let pending = pg::begin_promotion(&mut owner, &record("s", 3))
        .await
        .unwrap();
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        pg::promote(&mut blocked, &record("s", 4)),
    )
    .await
    .expect("the promotion hung on the strategy lock")
    .unwrap_err();
    check(&e, "locking strategy s");
    pending.commit().await.unwrap();
    // Neither timed-out promotion left a row; the session works on.
    assert_eq!(
        history_of(&owner, "s").await,
        vec![
            (1, "promote".into(), 1, None),
            (2, "promote".into(), 2, Some(1))
        ]
    );
    let next = pg::promote(&mut blocked, &record("s", 5)).await.unwrap();
    assert_eq!(next.version, 3);
    check_active(&owner, "s", 3, 5).await;

    // A statement running past statement_timeout is cancelled.
    let quick = connect(&format!("{url}?options=-c%20statement_timeout%3D200ms")).await;
    let e = quick.batch_execute("SELECT pg_sleep(5)").await.unwrap_err();
    assert!(
        pg::one_line(&e).contains("canceling statement due to statement timeout"),
        "{}",
        pg::one_line(&e)
    );
}

// ---------------------------------------------------------------------------------------------
// The live bot's query

#[tokio::test]
async fn the_live_bot_query_reads_the_active_config() {
    let (url, mut client) = fresh_db("t_live").await;
    let bot = connect(&url).await;
    let none = bot.query_opt(pg::LIVE_BOT_QUERY, &[&"s"]).await.unwrap();
    assert!(
        none.is_none(),
        "no row before any promotion: the bot must not trade"
    );
    let r = record("s", 2);
    pg::promote(&mut client, &r).await.unwrap();
    let row = bot.query_one(pg::LIVE_BOT_QUERY, &[&"s"]).await.unwrap();
    assert_eq!(row.get::<_, i32>("version"), 1);
    assert_eq!(row.get::<_, Value>("params"), r.params);
    assert_eq!(row.get::<_, Vec<String>>("symbols"), r.symbols);
    assert_eq!(row.get::<_, String>("bar_interval"), "1h");
    assert_eq!(row.get::<_, f64>("leverage"), 3.0);
    assert_eq!(row.get::<_, String>("margin_mode"), "cross");
    assert_eq!(row.get::<_, f64>("max_position_size"), 0.25);
    assert_eq!(row.get::<_, i32>("max_concurrent_positions"), 2);
    assert_eq!(
        row.get::<_, Value>("symbol_leverage"),
        json!({"BTCUSDT": 3.0, "XRPUSDT": 2.0})
    );
    assert_eq!(row.get::<_, Value>("resolved"), r.resolved);
    assert_eq!(row.get::<_, Value>("spec_json"), r.spec_json);
    assert_eq!(row.get::<_, String>("data_hash"), r.data_hash);
    assert_eq!(row.get::<_, String>("engine_commit"), r.engine_commit);
    // The documentation shows the same query.
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROMOTION.md"))
            .unwrap();
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        words(&doc).contains(&words(pg::LIVE_BOT_QUERY)),
        "docs/PROMOTION.md must show pg::LIVE_BOT_QUERY verbatim:\n{}",
        pg::LIVE_BOT_QUERY
    );
}

// ---------------------------------------------------------------------------------------------
// Connection errors

#[tokio::test]
async fn connection_errors_are_one_line_and_never_show_the_password() {
    let c = cluster::cluster();
    let secret = "S3cret-never-shown";
    let check = |e: &PgError, expect: &str| {
        let text = e.to_string();
        assert!(!text.contains(secret), "password leaked: {text}");
        assert!(!text.contains('\n'), "not one line: {text}");
        assert!(text.contains(expect), "{text:?} should contain {expect:?}");
    };
    // Nothing listens on the port.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let t = Target::parse(&format!(
        "postgresql://etrading:{secret}@127.0.0.1:{closed}/x"
    ))
    .unwrap();
    assert!(!format!("{t} {t:?}").contains(secret));
    let e = pg::connect(&t).await.unwrap_err();
    check(&e, "server unreachable");
    check(&e, &format!("postgresql://etrading@127.0.0.1:{closed}/x"));
    // A role the server does not have.
    let t = Target::parse(&c.url_as("nobody", secret, "postgres")).unwrap();
    let e = pg::connect(&t).await.unwrap_err();
    check(&e, "role \"nobody\" does not exist");
    // A wrong password.
    let t = Target::parse(&c.url_as(cluster::ADMIN, secret, "postgres")).unwrap();
    let e = pg::connect(&t).await.unwrap_err();
    check(&e, "password authentication failed");
    // A database that does not exist.
    let t = Target::parse(&c.url("no_such_db")).unwrap();
    let e = pg::connect(&t).await.unwrap_err();
    check(&e, "database \"no_such_db\" does not exist");
    // Strings that do not parse.
    for bad in [
        format!("postgresql://u:{secret}@host:notaport/db"),
        format!("host=h password={secret} port=x"),
        format!("postgresql://u:{secret}@h/db?sslmode=sometimes"),
    ] {
        let e = Target::parse(&bad).unwrap_err();
        check(&e, "invalid PostgreSQL connection string");
    }
}

/// Whether `client`'s session runs over TLS.
async fn over_tls(client: &Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn tls_sslmode_and_the_root_certificate() {
    let t = cluster::tls_cluster();
    let plain = cluster::cluster();
    let secret = t.cluster.password.clone();
    let (ca, other_ca) = (t.ca.display(), t.other_ca.display());
    let on_tls = |host: &str, query: &str| {
        format!(
            "postgresql://{}:{secret}@{host}:{}/postgres{query}",
            cluster::ADMIN,
            t.cluster.port
        )
    };
    let check_refused = |e: &PgError, expect: &str| {
        let text = e.to_string();
        assert!(
            matches!(e, PgError::Connect { .. }) || matches!(e, PgError::InvalidUrl { .. }),
            "{text}"
        );
        assert!(!text.contains(&secret), "password leaked: {text}");
        assert!(!text.contains(&plain.password), "password leaked: {text}");
        assert!(!text.contains('\n'), "not one line: {text}");
        assert!(text.contains(expect), "{text:?} should contain {expect:?}");
    };
    let connects = async |url: &str, defaults: &pg::TlsDefaults| -> Result<Client, PgError> {
        pg::connect(&Target::parse_with(url, defaults)?).await
    };
    let none = pg::TlsDefaults::default();

    // sslmode=require with the right root certificate: TLS, the chain checked.
    for query in [
        format!("?sslmode=require&sslrootcert={ca}"),
        format!("?sslmode=verify-ca&sslrootcert={ca}"),
    ] {
        let client = connects(&on_tls("127.0.0.1", &query), &none)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        assert!(over_tls(&client).await, "{query}");
    }
    // verify-full: the certificate names localhost, not 127.0.0.1.
    let e = connects(
        &on_tls(
            "127.0.0.1",
            &format!("?sslmode=verify-full&sslrootcert={ca}"),
        ),
        &none,
    )
    .await
    .unwrap_err();
    check_refused(
        &e,
        "TLS: the server's certificate does not name the host connected to",
    );
    let client = connects(
        &on_tls(
            "localhost",
            &format!("?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"),
        ),
        &none,
    )
    .await
    .unwrap();
    assert!(over_tls(&client).await);
    // A promotion over it.
    recreate(&client, "t_tls").await;
    let mut client_db = connects(
        &format!(
            "host=localhost hostaddr=127.0.0.1 port={} user={} password={secret} dbname=t_tls \
             sslmode=verify-full sslrootcert='{ca}'",
            t.cluster.port,
            cluster::ADMIN
        ),
        &none,
    )
    .await
    .unwrap();
    assert!(over_tls(&client_db).await);
    pg::migrate(&mut client_db).await.unwrap();
    pg::promote(&mut client_db, &record("s", 1)).await.unwrap();
    check_active(&client_db, "s", 1, 1).await;

    // A root certificate that did not sign the server's: refused, whatever the mode.
    for mode in ["require", "verify-ca", "verify-full"] {
        let e = connects(
            &on_tls(
                "localhost",
                &format!("?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={other_ca}"),
            ),
            &none,
        )
        .await
        .unwrap_err();
        check_refused(
            &e,
            &format!(
                "TLS: the server's certificate is not signed by a certificate of sslrootcert {other_ca}"
            ),
        );
    }
    // A root certificate file that is missing or holds no certificate.
    let e = connects(
        &on_tls(
            "127.0.0.1",
            "?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        ),
        &none,
    )
    .await
    .unwrap_err();
    check_refused(&e, "cannot read sslrootcert /nonexistent/ca.pem");
    let empty = t.cluster.dir.join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let e = connects(
        &on_tls(
            "127.0.0.1",
            &format!("?sslmode=require&sslrootcert={}", empty.display()),
        ),
        &none,
    )
    .await
    .unwrap_err();
    check_refused(&e, "holds no PEM certificate");
    // verify-ca and verify-full need a root certificate.
    let e = Target::parse(&on_tls("127.0.0.1", "?sslmode=verify-ca")).unwrap_err();
    check_refused(&e, "sslmode=verify-ca needs a root certificate");

    // Without a root certificate, as libpq: prefer (the default) and require encrypt without
    // checking the certificate; disable does not encrypt.
    for (query, tls) in [
        ("", true),
        ("?sslmode=require", true),
        ("?sslmode=disable", false),
    ] {
        let client = connects(&on_tls("127.0.0.1", query), &none).await.unwrap();
        assert_eq!(over_tls(&client).await, tls, "{query:?}");
    }
    // Settings from outside the string (PGSSLMODE, PGSSLROOTCERT in the CLI); the string's win.
    let env = pg::TlsDefaults {
        sslmode: Some("verify-ca".into()),
        sslrootcert: Some(t.other_ca.clone()),
    };
    let e = connects(&on_tls("127.0.0.1", ""), &env).await.unwrap_err();
    check_refused(&e, "is not signed by a certificate of sslrootcert");
    let client = connects(&on_tls("127.0.0.1", &format!("?sslrootcert={ca}")), &env)
        .await
        .unwrap();
    assert!(over_tls(&client).await);
    let client = connects(&on_tls("127.0.0.1", "?sslmode=disable"), &env)
        .await
        .unwrap();
    assert!(!over_tls(&client).await);

    // A server without TLS: refused under require and the verify modes, used in clear under
    // prefer.
    let plain_url = |query: &str| format!("{}{query}", plain.url("postgres"));
    for query in [
        "?sslmode=require".to_string(),
        format!("?sslmode=require&sslrootcert={ca}"),
        format!("?sslmode=verify-full&sslrootcert={ca}"),
    ] {
        let e = connects(&plain_url(&query), &none).await.unwrap_err();
        check_refused(&e, "the server does not offer TLS, and sslmode=");
        check_refused(&e, "does not connect without it");
    }
    let client = connects(&plain_url("?sslmode=prefer"), &none)
        .await
        .unwrap();
    assert!(!over_tls(&client).await);
}

// ---------------------------------------------------------------------------------------------
// The study side: trials in Optuna's schema, refusals, the re-run comparison

const HASH: &str = "1111111111111111111111111111111111111111111111111111111111111111";
const OTHER_HASH: &str = "2222222222222222222222222222222222222222222222222222222222222222";

/// One trial to write: number, state, value (`None`: no row; infinities as Optuna stores them)
/// and user attributes as Python would write them.
struct Trial {
    state: &'static str,
    value: Option<f64>,
    attrs: Vec<(&'static str, String)>,
}

fn good_attrs(n_trades: u32, hash: &str) -> Vec<(&'static str, String)> {
    vec![
        ("n_trades", n_trades.to_string()),
        ("liquidations", "0".into()),
        ("total_return", "0.25".into()),
        ("max_drawdown", "0.125".into()),
        ("calmar", "Infinity".into()),
        ("data_hash", format!("\"{hash}\"")),
        ("engine_version", "\"0.1.0\"".into()),
    ]
}

/// Writes an Optuna study file with `trials` of study `name` (a second study first, so that
/// study and trial ids differ from numbers).
fn write_study(path: &Path, name: &str, direction: &str, trials: &[Trial]) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(include_str!("../src/study/schema.sql"))
        .unwrap();
    db.execute_batch(
        "INSERT INTO version_info VALUES (1, 12, '5.0.0');
         INSERT INTO alembic_version VALUES ('v3.2.0.a');
         INSERT INTO studies VALUES (1, 'other');
         INSERT INTO study_directions VALUES (1, 'MINIMIZE', 1, 0);
         INSERT INTO trials VALUES (1, 0, 1, 'COMPLETE', '2026-11-21 05:47:42.746482', '2026-11-21 05:47:42.777796');",
    )
    .unwrap();
    db.execute("INSERT INTO studies VALUES (2, ?1)", [name])
        .unwrap();
    db.execute(
        "INSERT INTO study_directions VALUES (2, ?1, 2, 0)",
        [direction],
    )
    .unwrap();
    db.execute(
        "INSERT INTO study_system_attributes (study_id, key, value_json) VALUES \
         (2, 'study:metric_names', '[\"calmar\"]')",
        [],
    )
    .unwrap();
    for (number, t) in trials.iter().enumerate() {
        let trial_id = number as i64 + 2;
        db.execute(
            "INSERT INTO trials VALUES (?1, ?2, 2, ?3, '2026-11-21 05:47:43.000000', NULL)",
            rusqlite::params![trial_id, number as i64, t.state],
        )
        .unwrap();
        let params = [
            (
                "rsi_window",
                14.0 + number as f64,
                r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 1, "low": 7, "high": 28}}"#,
            ),
            (
                "stop_pct",
                0.015751320499779727,
                r#"{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.001, "high": 0.1, "log": true}}"#,
            ),
            (
                "side",
                (number % 3) as f64,
                r#"{"name": "CategoricalDistribution", "attributes": {"choices": ["long", "short", "both"]}}"#,
            ),
        ];
        for (p, v, d) in params {
            db.execute(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
                 VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![trial_id, p, v, d],
            )
            .unwrap();
        }
        if let Some(v) = t.value {
            let (value, kind) = match v {
                v if v == f64::INFINITY => (None, "INF_POS"),
                v if v == f64::NEG_INFINITY => (None, "INF_NEG"),
                v => (Some(v), "FINITE"),
            };
            db.execute(
                "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES \
                 (?1, 0, ?2, ?3)",
                rusqlite::params![trial_id, value, kind],
            )
            .unwrap();
        }
        for (k, v) in &t.attrs {
            db.execute(
                "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?1, ?2, ?3)",
                rusqlite::params![trial_id, k, v],
            )
            .unwrap();
        }
    }
}

fn sample_trials() -> Vec<Trial> {
    let mut walk_forward = good_attrs(40, HASH);
    walk_forward.extend([
        ("oos_0_max_drawdown", "0.25".to_string()),
        ("oos_1_max_drawdown", "0.375".to_string()),
        ("oos_0_n_trades", "7".to_string()),
        ("oos_1_n_trades", "5".to_string()),
        ("is_0_n_trades", "100".to_string()),
    ]);
    let mut liquidated = good_attrs(50, HASH);
    liquidated[1].1 = "2".into();
    let mut pruned = good_attrs(50, HASH);
    pruned.push((
        "pruned_reason",
        "\"drawdown 0.62 over the 5x cap 0.5\"".into(),
    ));
    vec![
        /* 0 */
        Trial {
            state: "COMPLETE",
            value: Some(1.5),
            attrs: good_attrs(40, HASH),
        },
        /* 1 */
        Trial {
            state: "COMPLETE",
            value: Some(9.0),
            attrs: liquidated,
        },
        /* 2 */
        Trial {
            state: "PRUNED",
            value: Some(8.0),
            attrs: pruned,
        },
        /* 3 */
        Trial {
            state: "COMPLETE",
            value: Some(7.0),
            attrs: good_attrs(3, HASH),
        },
        /* 4 */
        Trial {
            state: "COMPLETE",
            value: Some(6.0),
            attrs: good_attrs(40, OTHER_HASH),
        },
        /* 5 */
        Trial {
            state: "FAIL",
            value: None,
            attrs: vec![],
        },
        /* 6 */
        Trial {
            state: "RUNNING",
            value: None,
            attrs: vec![],
        },
        /* 7 */
        Trial {
            state: "COMPLETE",
            value: Some(1.7),
            attrs: walk_forward,
        },
        /* 8 */
        Trial {
            state: "COMPLETE",
            value: Some(f64::NEG_INFINITY),
            attrs: good_attrs(40, HASH),
        },
        /* 9 */
        Trial {
            state: "COMPLETE",
            value: Some(1.7),
            attrs: good_attrs(40, HASH),
        },
    ]
}

fn policy() -> Policy {
    Policy {
        min_trades: 20,
        data_hash: HASH.into(),
    }
}

#[test]
fn a_trial_is_read_with_its_params_values_and_attributes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.db");
    write_study(&path, "rsi", "MAXIMIZE", &sample_trials());
    let (study, trials) = pg::read_study(&path, "rsi").unwrap();
    assert_eq!(
        (study.study_id, study.directions.clone()),
        (2, vec![Direction::Maximize])
    );
    assert_eq!(study.objective_names, vec!["calmar".to_string()]);
    assert_eq!(trials.len(), 10);
    let t = &trials[7];
    assert_eq!(
        (t.trial_id, t.trial_number, t.state),
        (9, 7, TrialState::Complete)
    );
    assert_eq!(t.objective_name, "calmar");
    assert_eq!(t.objective_value(), Some(1.7));
    assert_eq!(t.params["rsi_window"], ParamValue::Int(21));
    assert_eq!(
        t.params["stop_pct"],
        ParamValue::Float(0.015751320499779727)
    );
    assert_eq!(
        t.params["side"],
        ParamValue::Str("short".into()),
        "categorical index 1 of [long, short, both]"
    );
    assert_eq!(
        t.number("calmar"),
        Some(f64::INFINITY),
        "Python's Infinity token"
    );
    assert_eq!(t.text("data_hash"), Some(HASH));
    // OOS key metrics from the walk-forward windows: the largest drawdown, the total trades.
    let oos = t.oos();
    assert_eq!((oos.max_drawdown, oos.trades), (Some(0.375), Some(12)));
    assert_eq!((oos.apr, oos.calmar), (None, None));
    assert_eq!(trials[0].oos(), OosMetrics::default());
    assert_eq!(trials[8].objective_value(), Some(f64::NEG_INFINITY));
    assert_eq!(
        trials[2].pruned_reason(),
        Some("drawdown 0.62 over the 5x cap 0.5")
    );
    assert!(trials[5].values.is_empty());

    let e = pg::read_study(&path, "nope").unwrap_err().to_string();
    assert!(
        e.contains("no study named \"nope\"") && e.contains("(studies: \"other\", \"rsi\")"),
        "{e}"
    );
    let e = pg::read_study(&dir.path().join("missing.db"), "rsi")
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.db: no such study file"), "{e}");
}

/// Checks the refusals of trial `number` and whether each can be forced.
fn check_refusals(trials: &[PromotionCandidate], number: usize, expect: &[(&str, bool)]) {
    let got: Vec<(String, bool)> = pg::refusals(&trials[number], &policy())
        .iter()
        .map(|r| (r.to_string(), r.forceable()))
        .collect();
    assert_eq!(got.len(), expect.len(), "trial {number}: {got:?}");
    for ((text, forceable), (want, want_forceable)) in got.iter().zip(expect) {
        assert!(
            text.contains(want),
            "trial {number}: {text:?} should contain {want:?}"
        );
        assert_eq!(forceable, want_forceable, "trial {number}: {text}");
    }
}

#[test]
fn refusal_cases_and_the_best_eligible_trial() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.db");
    write_study(&path, "rsi", "MAXIMIZE", &sample_trials());
    let (study, trials) = pg::read_study(&path, "rsi").unwrap();
    check_refusals(&trials, 0, &[]);
    check_refusals(&trials, 1, &[("liquidated (2 liquidations)", true)]);
    check_refusals(
        &trials,
        2,
        &[("pruned: drawdown 0.62 over the 5x cap 0.5", true)],
    );
    check_refusals(
        &trials,
        3,
        &[("made 3 trades, fewer than the minimum 20", true)],
    );
    check_refusals(
        &trials,
        4,
        &[(
            &format!("ran on data sha256:{OTHER_HASH}, the data given is sha256:{HASH}"),
            true,
        )],
    );
    check_refusals(
        &trials,
        5,
        &[
            ("is FAIL", false),
            ("no `liquidations`", false),
            ("no `n_trades`", false),
            ("no `data_hash`", false),
            ("no `engine_version`", false),
        ],
    );
    assert!(matches!(
        pg::refusals(&trials[6], &policy())[0],
        Refusal::NotFinished {
            state: TrialState::Running
        }
    ));
    // Best eligible: 1.7 (trial 7, the first of two ties), above 1.5; the higher values are
    // all refused.
    let best = pg::best_eligible(&study, &trials, &policy()).unwrap();
    assert_eq!(best.trial_number, 7);

    // Minimising: -inf is the best.
    let path = dir.path().join("min.db");
    write_study(&path, "rsi", "MINIMIZE", &sample_trials());
    let (study, trials) = pg::read_study(&path, "rsi").unwrap();
    assert_eq!(
        pg::best_eligible(&study, &trials, &policy())
            .unwrap()
            .trial_number,
        8
    );

    // Nothing eligible: the reasons are counted.
    let p = Policy {
        min_trades: 1000,
        data_hash: HASH.into(),
    };
    let e = pg::best_eligible(&study, &trials, &p).unwrap_err();
    assert!(e.contains("no eligible trial among 10"), "{e}");
    assert!(e.contains("6 below the trade minimum"), "{e}");
    assert!(
        e.contains("1 liquidated") && e.contains("1 PRUNED") && e.contains("1 FAIL"),
        "{e}"
    );
}

#[test]
fn the_rerun_must_reproduce_the_stored_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.db");
    write_study(&path, "rsi", "MAXIMIZE", &sample_trials());
    let (_, trials) = pg::read_study(&path, "rsi").unwrap();
    let t = &trials[0];
    let check = |rerun: &[(&str, f64)], mismatched: &[&str]| {
        let (compared, bad) = pg::compare_metrics(t, rerun, Tolerance::RERUN).unwrap();
        assert!(compared.contains(&"n_trades".to_string()));
        let keys: Vec<&str> = bad.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(keys, mismatched, "{bad:?}");
    };
    // Stored: n_trades 40, liquidations 0, total_return 0.25, max_drawdown 0.125, calmar inf.
    let exact = [
        ("n_trades", 40.0),
        ("liquidations", 0.0),
        ("total_return", 0.25),
        ("max_drawdown", 0.125),
        ("calmar", f64::INFINITY),
        ("sharpe", 1.0),
    ];
    check(&exact, &[]);
    // Within rel 1e-9: agrees; 1e-7 off: refused; another trade count or a finite calmar too.
    let mut near = exact;
    near[2].1 = 0.25 * (1.0 + 1e-10);
    check(&near, &[]);
    let mut off = exact;
    off[2].1 = 0.25 * (1.0 + 1e-7);
    off[0].1 = 41.0;
    off[4].1 = 1e9;
    check(&off, &["n_trades", "total_return", "calmar"]);
    // A trial storing no n_trades cannot be checked.
    let e = pg::compare_metrics(&trials[5], &exact, Tolerance::RERUN).unwrap_err();
    assert!(e.contains("too few metrics"), "{e}");
}

#[test]
fn python_json_tokens_outside_strings_only() {
    // Bare `NaN`, `Infinity`, `-Infinity` (Python's json.dumps) are numbers; the same words
    // inside a string are text. The metrics JSON keeps the non-finite numbers as Python's
    // tokens in strings.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.db");
    let mut attrs = good_attrs(40, HASH);
    attrs.extend([
        ("a_nan", "NaN".to_string()),
        ("b_neg_inf", "-Infinity".to_string()),
        ("c_text", r#""NaN and Infinity \" -Infinity""#.to_string()),
        ("d_list", "[NaN, Infinity, 1.5]".to_string()),
    ]);
    let trials = [Trial {
        state: "COMPLETE",
        value: Some(1.0),
        attrs,
    }];
    write_study(&path, "rsi", "MAXIMIZE", &trials);
    let (_, trials) = pg::read_study(&path, "rsi").unwrap();
    let t = &trials[0];
    assert!(t.number("a_nan").unwrap().is_nan());
    assert_eq!(t.number("b_neg_inf"), Some(f64::NEG_INFINITY));
    assert_eq!(t.number("c_text"), None);
    assert_eq!(t.text("c_text"), Some("NaN and Infinity \" -Infinity"));
    assert_eq!(t.number("d_list"), None);
    let metrics = t.metrics();
    assert_eq!(metrics["a_nan"], json!("NaN"));
    assert_eq!(metrics["b_neg_inf"], json!("-Infinity"));
    assert_eq!(metrics["calmar"], json!("Infinity"));
    assert_eq!(metrics["n_trades"], json!(40));
    assert!(!metrics.contains_key("c_text") && !metrics.contains_key("d_list"));
}
