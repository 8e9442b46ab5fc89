#!/usr/bin/env bash
# End-to-end test of `etrading promote`, `rollback`, `configs` and `db migrate` against a real
# PostgreSQL: a throwaway cluster (initdb in a temporary directory, a loopback port, run as the
# `postgres` user under root), stopped and removed on exit, also when a check fails.
# The study file is written here in Optuna's schema (db/src/study/schema.sql) from a real
# `etrading backtest --json` run, so the re-run check has real metrics to reproduce.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/setup.sh
apt_ensure postgresql python3

cargo build -q --locked -p etrading-cli
target_dir=${CARGO_TARGET_DIR:-target}
[[ "$target_dir" = /* ]] || target_dir="$(pwd)/$target_dir"
ETRADING="$target_dir/debug/etrading"

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
[ -x "$bin/initdb" ] || { echo "FAIL: PostgreSQL server binaries not found" >&2; exit 1; }
work=$(mktemp -d /tmp/etrading-promote-XXXXXX)
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
  chown postgres:postgres "$work"
  as_pg=(setpriv --reuid="$(id -u postgres)" --regid="$(id -g postgres)" --clear-groups --)
fi
cleanup() {
  "${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

password="pw-$RANDOM-$RANDOM"
echo "$password" >"$work/pwfile"
chmod 644 "$work/pwfile"
"${as_pg[@]}" "$bin/initdb" -D "$work/data" -U etrading -A scram-sha-256 --pwfile="$work/pwfile" \
  --no-sync -E UTF8 --locale=C >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as_pg[@]}" "$bin/pg_ctl" -D "$work/data" -l "$work/data/server.log" -w -o \
  "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories= -c fsync=off" start >/dev/null
# The owner (a superuser here) migrates; promotion runs as `promoter`, which owns nothing.
owner_url="postgresql://etrading:$password@127.0.0.1:$port/postgres"
promoter_password="pr-$RANDOM-$RANDOM"
promoter_url="postgresql://promoter:$promoter_password@127.0.0.1:$port/postgres"
PGPASSWORD="$password" "$bin/psql" -q -h 127.0.0.1 -p "$port" -U etrading -d postgres \
  -c "CREATE ROLE promoter LOGIN PASSWORD '$promoter_password'"
export DATABASE_URL="$owner_url"

fail() { echo "FAIL: $*" >&2; exit 1; }
# expect_fail PATTERN CMD...: CMD must exit 1 with PATTERN in its one-line error.
expect_fail() {
  local pattern=$1; shift
  local err
  if err=$("$@" 2>&1 >/dev/null); then fail "expected failure: $*"; fi
  grep -qF -- "$pattern" <<<"$err" || fail "error of '$*' lacks '$pattern': $err"
  [ "$(wc -l <<<"$err")" -eq 1 ] || fail "error of '$*' is not one line: $err"
  if grep -qF -- "$password" <<<"$err"; then fail "password printed: $err"; fi
  if grep -qF -- "$promoter_password" <<<"$err"; then fail "password printed: $err"; fi
}

spec=examples/rsi_ema.toml
sets=(--set rsi_window=14 --set rsi_lower=30 --set rsi_upper=70 --set ema_long=100 --set leverage=3)
"$ETRADING" backtest "$spec" "${sets[@]}" --json >"$work/bt1.json"
sets2=(--set rsi_window=14 --set rsi_lower=40 --set rsi_upper=60 --set ema_long=50 --set leverage=2)
"$ETRADING" backtest "$spec" "${sets2[@]}" --json >"$work/bt2.json"

# Study "rsi": trial 0 = bt1, trial 1 = bt2 (better objective), trial 2 = bt1 with a tampered
# total_return, trial 3 = bt2 marked liquidated.
python3 - "$work" "$spec" <<'PY'
import json, sqlite3, sys
work, spec = sys.argv[1], sys.argv[2]
db = sqlite3.connect(f"{work}/study.db")
db.executescript(open("db/src/study/schema.sql").read())
db.executescript("""
INSERT INTO version_info VALUES (1, 12, '5.0.0');
INSERT INTO alembic_version VALUES ('v3.2.0.a');
INSERT INTO studies VALUES (1, 'rsi');
INSERT INTO study_directions VALUES (1, 'MAXIMIZE', 1, 0);
INSERT INTO study_system_attributes (study_id, key, value_json) VALUES (1, 'study:metric_names', '["calmar"]');
""")
db.execute("INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, 'spec', ?)",
           (json.dumps(open(spec).read()),))
def dist(name, low, high, step):
    return json.dumps({"name": "IntDistribution", "attributes": {"log": False, "step": step, "low": low, "high": high}})
space = {"rsi_window": ("CategoricalDistribution", [14, 21]), "rsi_lower": (20, 40, 5),
         "rsi_upper": (60, 80, 5), "ema_long": ("CategoricalDistribution", [50, 100, 200]),
         "leverage": (1, 10, 1)}
def add(number, bt, tamper=None, liquidated=False):
    d = json.load(open(f"{work}/{bt}"))
    m, p = d["metrics"], d["provenance"]
    trial_id = number + 1
    db.execute("INSERT INTO trials VALUES (?, ?, 1, 'COMPLETE', '2026-11-21 05:47:42.746482', '2026-11-21 05:47:43.000000')", (trial_id, number))
    for name, value in p["params"].items():
        s = space[name]
        if s[0] == "CategoricalDistribution":
            dj = json.dumps({"name": s[0], "attributes": {"choices": s[1]}}); internal = float(s[1].index(value))
        else:
            dj = dist(name, *s); internal = float(value)
        db.execute("INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?, ?, ?, ?)", (trial_id, name, internal, dj))
    db.execute("INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, 0, ?, 'FINITE')", (trial_id, m["calmar"]))
    attrs = {k: m[k] for k in ["total_return", "cagr", "max_drawdown", "calmar", "sharpe", "win_rate", "n_trades", "liquidations"]}
    attrs["fees"], attrs["funding"] = m["fees_paid"], m["funding_paid"]
    attrs["data_hash"], attrs["engine_version"] = p["data_hash"], p["engine_version"]
    if tamper: attrs["total_return"] *= 1 + 1e-6
    if liquidated: attrs["liquidations"] = 1
    for k, v in attrs.items():
        db.execute("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)", (trial_id, k, json.dumps(v)))
add(0, "bt1.json"); add(1, "bt2.json"); add(2, "bt1.json", tamper=True); add(3, "bt2.json", liquidated=True)
db.commit()
PY
S=(--storage "sqlite:///$work/study.db" --study rsi)

# Nothing but `db migrate` creates tables: before it, the other commands say to run it.
tables() {
  PGPASSWORD="$password" "$bin/psql" -qtA -h 127.0.0.1 -p "$port" -U etrading -d postgres \
    -c "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
}
expect_fail "no etrading tables yet; run \`etrading db migrate\` as the role that will own them" \
  "$ETRADING" promote "${S[@]}" --min-trades 1
expect_fail "run \`etrading db migrate\`" "$ETRADING" rollback --strategy rsi_ema
expect_fail "run \`etrading db migrate\`" "$ETRADING" configs
[ "$(tables)" = 0 ] || fail "a command other than db migrate created tables"

expect_fail "cannot be a promoter: it is a superuser" "$ETRADING" db migrate --grant-promoter etrading
"$ETRADING" db migrate | grep -q "up to date" || fail "migrate after the refused grant"
out=$("$ETRADING" db migrate --grant-promoter promoter)
grep -q "role \"promoter\" may promote and roll back: SELECT on etrading_migrations; SELECT, INSERT on config_history; SELECT, INSERT, UPDATE on active_configs" <<<"$out" \
  || fail "grant: $out"
"$ETRADING" db migrate | grep -q "up to date" || fail "second migrate"
export DATABASE_URL="$promoter_url"
expect_fail "runs as the role that owns the tables" "$ETRADING" db migrate

# Best eligible: trial 1 (trial 3 scores the same but is liquidated); then trial 0.
out=$("$ETRADING" promote "${S[@]}" --min-trades 1 --by alice)
grep -q "trial    study \"rsi\" trial 1 " <<<"$out" || fail "best trial: $out"
grep -q "stored metrics reproduced within rel 1e-9" <<<"$out" || fail "re-run: $out"
grep -q "promoted rsi_ema version 1 at postgresql://promoter@127.0.0.1:$port/postgres" <<<"$out" || fail "promote: $out"
if grep -qF "$promoter_password" <<<"$out"; then fail "password printed"; fi
out=$("$ETRADING" promote "${S[@]}" --min-trades 1 --trial 0 --by alice)
grep -q "promoted rsi_ema version 2 (was version 1)" <<<"$out" || fail "second promotion: $out"

# Refusals.
expect_fail "does not reproduce study \"rsi\" trial 2" "$ETRADING" promote "${S[@]}" --min-trades 1 --trial 2
expect_fail "total_return: stored" "$ETRADING" promote "${S[@]}" --min-trades 1 --trial 2
expect_fail "was liquidated (1 liquidations) (override with --force --reason TEXT)" \
  "$ETRADING" promote "${S[@]}" --min-trades 1 --trial 3
expect_fail "the data given is sha256:" "$ETRADING" promote "${S[@]}" --min-trades 1 --trial 0 --from 2025-03-01
expect_fail "fewer than the minimum 1000" "$ETRADING" promote "${S[@]}" --trial 0 --min-trades 1000
expect_fail "has no trial 9" "$ETRADING" promote "${S[@]}" --min-trades 1 --trial 9
# A forced promotion needs a reason, and is recorded with it; a liquidated trial whose stored
# metrics the engine does not reproduce stays refused even when forced.
"$ETRADING" promote "${S[@]}" --trial 0 --min-trades 10 --force >/dev/null 2>&1 && fail "--force without --reason"
expect_fail "made 5 trades, fewer than the minimum 10" "$ETRADING" promote "${S[@]}" --trial 0 --min-trades 10
expect_fail "liquidations: stored 1.0, re-run 0.0" \
  "$ETRADING" promote "${S[@]}" --min-trades 1 --trial 3 --force --reason "checked by hand"
out=$("$ETRADING" promote "${S[@]}" --trial 0 --min-trades 10 --force --reason "few trades, checked by hand" --dry-run)
grep -q "dry run: nothing written" <<<"$out" || fail "dry run: $out"
out=$("$ETRADING" promote "${S[@]}" --trial 0 --min-trades 10 --force --reason "few trades, checked by hand" --by bob)
grep -q "promoted rsi_ema version 3 (was version 2)" <<<"$out" || fail "forced promotion: $out"

# Rollback: to version 2's config, then to version 1's.
"$ETRADING" rollback --strategy rsi_ema --reason "v3 misbehaves" --by carol | grep -q "to the config of version 2: now version 4" || fail "rollback 1"
"$ETRADING" rollback --strategy rsi_ema --to 1 --by carol | grep -q "to the config of version 1: now version 5" || fail "rollback 2"
expect_fail "version 1 is the config already active" "$ETRADING" rollback --strategy rsi_ema --to 1
expect_fail "has no active config" "$ETRADING" rollback --strategy nope

"$ETRADING" configs | grep -q "^rsi_ema .* 5 rollback " || fail "configs"
"$ETRADING" configs --history --json >"$work/history.json"
python3 - "$work/history.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == "etrading.configs/1" and d["kind"] == "history", d.keys()
rows = [(r["version"], r["action"], r["source_version"], r["trial_number"], r["promoted_by"]) for r in d["configs"]]
assert rows == [(1, "promote", 1, 1, "alice"), (2, "promote", 2, 0, "alice"), (3, "promote", 3, 0, "bob"),
                (4, "rollback", 2, 0, "carol"), (5, "rollback", 1, 1, "carol")], rows
forced = d["configs"][2]
assert forced["forced"] == ["the trial made 5 trades, fewer than the minimum 10"], forced["forced"]
assert forced["force_reason"] == "few trades, checked by hand"
r = d["configs"][0]
assert r["leverage"] == 2.0 and r["margin_mode"] == "cross" and r["max_position_size"] == 0.25, r
assert r["symbol_leverage"] == {"BTCUSDT": 2, "ETHUSDT": 2, "XRPUSDT": 2, "LTCUSDT": 2} or \
       r["symbol_leverage"] == {"BTCUSDT": 2.0, "ETHUSDT": 2.0, "XRPUSDT": 2.0, "LTCUSDT": 2.0}, r["symbol_leverage"]
assert r["params"]["ema_long"] == 50 and r["objective_name"] == "calmar", r["params"]
assert len(r["engine_commit"]) >= 7 and r["spec_json"]["strategy"]["id"] == "rsi_ema"
assert r["rerun_metrics"]["n_trades"] == r["metrics"]["n_trades"]
print("history ok:", len(rows), "rows")
PY

# The live package (the bot's side) reads the active config straight from active_configs as
# the promoter role: the same row as `etrading configs --json`; an unknown strategy and a
# database migrated by a newer etrading are refused (tests/python/check_live_pg.py).
bash scripts/live-package.sh
"$ETRADING" configs --json >"$work/active.json"
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python tests/python/check_live_pg.py active "$promoter_url" \
  "$work/active.json" rsi_ema data/sample
# The live-parity check on the promoted config, read from PostgreSQL: refused at its leverage 2
# (Backtrader models no margin), run at leverage 1, every trade agrees; funding is named.
replay=(env PYTHONDONTWRITEBYTECODE=1 .venv/bin/python -m etrading_live.replay --config "$promoter_url"
  --strategy rsi_ema --data data/sample --etrading "$ETRADING")
expect_exit() {
  local want=$1; shift
  local rc=0
  "$@" >"$work/replay.out" 2>&1 || rc=$?
  [ "$rc" -eq "$want" ] || fail "replay exited $rc, expected $want: $(cat "$work/replay.out")"
  if grep -qF -- "$promoter_password" "$work/replay.out"; then fail "password printed"; fi
}
expect_exit 2 "${replay[@]}"
grep -q "pass --at-leverage-1" "$work/replay.out" || fail "replay at leverage 2: $(cat "$work/replay.out")"
expect_exit 0 "${replay[@]}" --at-leverage-1
grep -q "^OK: every trade agrees" "$work/replay.out" || fail "replay: $(cat "$work/replay.out")"
grep -q "^differs by design: funding" "$work/replay.out" || fail "replay: $(cat "$work/replay.out")"
owner_sql() {
  PGPASSWORD="$password" "$bin/psql" -qtA -h 127.0.0.1 -p "$port" -U etrading -d postgres -c "$1"
}
owner_sql "INSERT INTO etrading_migrations (version, name, sha256) VALUES (999, 'from a newer etrading', 'x')"
PYTHONDONTWRITEBYTECODE=1 .venv/bin/python tests/python/check_live_pg.py newer "$promoter_url" rsi_ema
owner_sql "DELETE FROM etrading_migrations WHERE version = 999"

# Connection errors: one line, no password.
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
expect_fail "server unreachable" "$ETRADING" configs --pg "postgresql://etrading:$password@127.0.0.1:$closed/postgres"
expect_fail "password authentication failed" "$ETRADING" configs --pg "postgresql://etrading:wrong$password@127.0.0.1:$port/postgres"
expect_fail "no PostgreSQL given" env -u DATABASE_URL "$ETRADING" configs
# TLS settings from libpq's environment variables (this server has no TLS).
expect_fail "the server does not offer TLS, and sslmode=require does not connect without it" \
  env PGSSLMODE=require "$ETRADING" configs
expect_fail "sslmode=verify-full needs a root certificate" env PGSSLMODE=verify-full "$ETRADING" configs
"$ETRADING" configs --pg "$promoter_url?sslmode=prefer" | grep -q "^rsi_ema " || fail "sslmode=prefer without TLS"
echo "test-promote: ok"
