//! Optuna-compatible SQLite study storage (schema in ../shared/optuna-schema).
