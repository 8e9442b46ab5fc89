//! PostgreSQL: schema migrations, `active_configs`, `config_history`, promotion and rollback.
