//! The promoter role: what `etrading promote`, `rollback` and `configs` need on the tables that
//! [`super::migrate`] creates, and nothing more.
//!
//! The role that runs `etrading db migrate` owns the tables, and an owner can drop them, alter
//! them or disable `config_history`'s append-only trigger. Promotion therefore runs as another
//! role, granted only [`PROMOTER_PRIVILEGES`]: it can append history rows and replace active
//! rows, but not change or delete a history row, delete an active row, or run any DDL.
//! `config_history.history_id` is an identity column, whose sequence PostgreSQL advances
//! without checking privileges on it, so no sequence privilege is granted.

use tokio_postgres::Client;

use super::PgError;

/// Each table and the privileges a promoter role holds on it.
pub const PROMOTER_PRIVILEGES: &[(&str, &str)] = &[
    ("etrading_migrations", "SELECT"),
    ("config_history", "SELECT, INSERT"),
    ("active_configs", "SELECT, INSERT, UPDATE"),
];

/// `name` as an SQL identifier: in double quotes, inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The statements that give `role` exactly the promoter privileges on the tables in `schema`:
/// whatever it held on them is revoked first, then [`PROMOTER_PRIVILEGES`] and `USAGE` on the
/// schema are granted.
pub fn promoter_grants(schema: &str, role: &str) -> Vec<String> {
    let (schema, role) = (quote_ident(schema), quote_ident(role));
    let tables: Vec<String> = PROMOTER_PRIVILEGES
        .iter()
        .map(|(table, _)| format!("{schema}.{table}"))
        .collect();
    let mut statements = vec![
        format!("REVOKE ALL ON {} FROM {role}", tables.join(", ")),
        format!("GRANT USAGE ON SCHEMA {schema} TO {role}"),
    ];
    statements.extend(
        PROMOTER_PRIVILEGES
            .iter()
            .map(|(table, privileges)| format!("GRANT {privileges} ON {schema}.{table} TO {role}")),
    );
    statements
}

/// Gives `role` the promoter privileges ([`promoter_grants`]) in one transaction. Run it as
/// the tables' owner, after [`super::migrate`]. Refused when the role does not exist, is a
/// superuser, or owns the tables or may become their owner (a member of the owning role): such
/// a role could disable the append-only trigger whatever it is granted.
pub async fn grant_promoter(client: &mut Client, role: &str) -> Result<(), PgError> {
    let tx = client
        .transaction()
        .await
        .map_err(|e| PgError::statement("starting the grant transaction", &e))?;
    let row = tx
        .query_opt(
            "SELECT r.rolsuper, pg_has_role(r.oid, c.relowner, 'MEMBER'), n.nspname::text \
             FROM pg_roles r, pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE r.rolname = $1 AND c.oid = 'config_history'::regclass",
            &[&role],
        )
        .await
        .map_err(|e| PgError::query("reading the role and the tables' owner", &e))?;
    let Some(row) = row else {
        return Err(PgError::NotAPromoter {
            role: role.to_string(),
            reason: "no such role (create it first: CREATE ROLE ... LOGIN PASSWORD ...)".into(),
        });
    };
    let (superuser, owner, schema): (bool, bool, String) = (row.get(0), row.get(1), row.get(2));
    if superuser {
        return Err(PgError::NotAPromoter {
            role: role.to_string(),
            reason: "it is a superuser, which can disable the append-only trigger".into(),
        });
    }
    if owner {
        return Err(PgError::NotAPromoter {
            role: role.to_string(),
            reason: "it owns the tables (or is a member of their owner), so it can drop them \
                     or disable the append-only trigger"
                .into(),
        });
    }
    for sql in promoter_grants(&schema, role) {
        tx.batch_execute(&sql).await.map_err(|e| {
            PgError::statement(format!("granting the promoter privileges to {role}"), &e)
        })?;
    }
    tx.commit()
        .await
        .map_err(|e| PgError::statement("committing the grants", &e))
}
