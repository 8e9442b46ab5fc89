-- Migration 0001: active_configs (what the live bot reads, one row per strategy) and
-- config_history (append-only: every promotion and rollback ever made).
--
-- A config row is one immutable version of a strategy's configuration. Every history row is a
-- version (1, 2, 3, ... per strategy); active_configs holds a copy of the newest history row of
-- each strategy, replaced in the same transaction that appends it.

CREATE TABLE config_history (
    history_id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    strategy_id              text NOT NULL CHECK (strategy_id <> ''),
    version                  integer NOT NULL CHECK (version >= 1),
    -- 'promote': a trial of a study; 'rollback': a copy of the config of source_version.
    action                   text NOT NULL CHECK (action IN ('promote', 'rollback')),
    -- The version whose config this row carries: itself for a promotion, the restored one
    -- for a rollback.
    source_version           integer NOT NULL CHECK (source_version >= 1 AND source_version <= version),
    -- The version active just before this row (NULL for a strategy's first promotion).
    previous_version         integer,
    spec_text                text NOT NULL,
    spec_json                jsonb NOT NULL,
    params                   jsonb NOT NULL,
    symbols                  text[] NOT NULL,
    bar_interval             text NOT NULL,
    leverage                 double precision NOT NULL CHECK (leverage >= 1),
    margin_mode              text NOT NULL CHECK (margin_mode IN ('isolated', 'cross')),
    -- Fraction of equity posted as margin per position, in (0, 1].
    max_position_size        double precision NOT NULL CHECK (max_position_size > 0 AND max_position_size <= 1),
    max_concurrent_positions integer NOT NULL CHECK (max_concurrent_positions >= 1),
    -- {"SYMBOL": cap} as in the spec's [risk] max_leverage.
    leverage_caps            jsonb NOT NULL,
    -- {"SYMBOL": leverage} after the caps: what the bot sets on the exchange.
    symbol_leverage          jsonb NOT NULL,
    -- The resolved [risk] and [execution] sections (stops, fees, slippage, funding).
    resolved                 jsonb NOT NULL,
    study_name               text NOT NULL,
    study_id                 bigint NOT NULL,
    trial_id                 bigint NOT NULL,
    trial_number             bigint NOT NULL,
    objective_name           text NOT NULL,
    objective_value          double precision,
    oos_apr                  double precision,
    oos_max_drawdown         double precision,
    oos_calmar               double precision,
    oos_trades               bigint,
    -- Every metric the trial stored, and the reference engine's re-run of it.
    metrics                  jsonb NOT NULL,
    rerun_metrics            jsonb,
    data_hash                text NOT NULL,
    engine_version           text NOT NULL,
    talib_version            text NOT NULL,
    engine_commit            text NOT NULL,
    -- Refusals overridden with --force (a JSON list of reasons) and the reason given.
    forced                   jsonb NOT NULL DEFAULT '[]'::jsonb,
    force_reason             text,
    -- Why a rollback was made (optional).
    note                     text,
    promoted_at              timestamptz NOT NULL DEFAULT now(),
    promoted_by              text NOT NULL,
    UNIQUE (strategy_id, version),
    CHECK (jsonb_typeof(forced) = 'array'),
    CHECK (jsonb_array_length(forced) = 0 OR coalesce(force_reason, '') <> '')
);

-- config_history is append-only: no row is ever changed or removed.
CREATE FUNCTION etrading_config_history_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'config_history is append-only (% refused)', TG_OP;
END;
$$;

CREATE TRIGGER config_history_no_update_delete
    BEFORE UPDATE OR DELETE ON config_history
    FOR EACH ROW EXECUTE FUNCTION etrading_config_history_append_only();

CREATE TRIGGER config_history_no_truncate
    BEFORE TRUNCATE ON config_history
    FOR EACH STATEMENT EXECUTE FUNCTION etrading_config_history_append_only();

CREATE TABLE active_configs (
    strategy_id              text PRIMARY KEY,
    version                  integer NOT NULL,
    history_id               bigint NOT NULL UNIQUE REFERENCES config_history (history_id),
    action                   text NOT NULL,
    source_version           integer NOT NULL,
    previous_version         integer,
    spec_text                text NOT NULL,
    spec_json                jsonb NOT NULL,
    params                   jsonb NOT NULL,
    symbols                  text[] NOT NULL,
    bar_interval             text NOT NULL,
    leverage                 double precision NOT NULL,
    margin_mode              text NOT NULL CHECK (margin_mode IN ('isolated', 'cross')),
    max_position_size        double precision NOT NULL,
    max_concurrent_positions integer NOT NULL,
    leverage_caps            jsonb NOT NULL,
    symbol_leverage          jsonb NOT NULL,
    resolved                 jsonb NOT NULL,
    study_name               text NOT NULL,
    study_id                 bigint NOT NULL,
    trial_id                 bigint NOT NULL,
    trial_number             bigint NOT NULL,
    objective_name           text NOT NULL,
    objective_value          double precision,
    oos_apr                  double precision,
    oos_max_drawdown         double precision,
    oos_calmar               double precision,
    oos_trades               bigint,
    metrics                  jsonb NOT NULL,
    rerun_metrics            jsonb,
    data_hash                text NOT NULL,
    engine_version           text NOT NULL,
    talib_version            text NOT NULL,
    engine_commit            text NOT NULL,
    forced                   jsonb NOT NULL,
    force_reason             text,
    note                     text,
    promoted_at              timestamptz NOT NULL,
    promoted_by              text NOT NULL,
    FOREIGN KEY (strategy_id, version) REFERENCES config_history (strategy_id, version)
);
