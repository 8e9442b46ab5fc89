"""Writes the tiny hand-made study the browser test reads: Optuna 5.0.0's SQLite schema
(db/src/study/schema.sql, the schema our study writer creates) with one study, `hand`, over
examples/rsi_ema.toml. Eight trials: a 3 x 2 grid of leverage x rsi_window (cell (2, 14) twice)
and one FAIL. Values (MAXIMIZE) and so the mean heatmap of `value` by leverage x rsi_window:

                leverage=1  leverage=2        leverage=3
  rsi_window=14    0.5      (1.0+2.0)/2=1.5     -0.5
  rsi_window=21    2.0      1.5                  0.25

Usage: python3 make_study.py OUT.db
"""

import json
import sqlite3
import sys
from pathlib import Path

INT = lambda lo, hi, step=1: json.dumps(
    {"name": "IntDistribution", "attributes": {"log": False, "step": step, "low": lo, "high": hi}}
)
DISTS = {
    "rsi_window": INT(14, 21, 7),
    "rsi_lower": INT(20, 40, 5),
    "rsi_upper": INT(60, 80, 5),
    "ema_long": INT(50, 200, 50),
    "leverage": INT(1, 10),
}
# number, state, leverage, rsi_window, value, sharpe
TRIALS = [
    (0, "COMPLETE", 1, 14, 0.5, 0.4),
    (1, "COMPLETE", 2, 14, 1.0, 0.8),
    (2, "COMPLETE", 3, 14, -0.5, -0.3),
    (3, "COMPLETE", 1, 21, 2.0, 1.6),
    (4, "COMPLETE", 2, 21, 1.5, 1.2),
    (5, "COMPLETE", 3, 21, 0.25, 0.2),
    (6, "COMPLETE", 2, 14, 2.0, 1.5),
    (7, "FAIL", 3, 21, None, None),
]


def main(out: str) -> None:
    path = Path(out)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).resolve().parents[2] / "db" / "src" / "study" / "schema.sql").read_text())
    db.execute("INSERT INTO version_info VALUES (1, 12, '5.0.0')")
    db.execute("INSERT INTO alembic_version VALUES ('v3.2.0.a')")
    db.execute("INSERT INTO studies VALUES (1, 'hand')")
    db.execute("INSERT INTO study_directions VALUES (1, 'MAXIMIZE', 1, 0)")
    db.execute(
        "INSERT INTO study_user_attributes (study_id, key, value_json) VALUES (1, 'spec_file', ?)",
        (json.dumps("examples/rsi_ema.toml"),),
    )
    for number, state, lev, window, value, sharpe in TRIALS:
        trial_id = number + 1
        db.execute(
            "INSERT INTO trials VALUES (?, ?, 1, ?, '2026-11-21 07:00:00.000000', '2026-11-21 07:00:01.000000')",
            (trial_id, number, state),
        )
        params = {"rsi_window": window, "rsi_lower": 30, "rsi_upper": 70, "ema_long": 200, "leverage": lev}
        for name, v in params.items():
            db.execute(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?, ?, ?, ?)",
                (trial_id, name, float(v), DISTS[name]),
            )
        if value is None:
            continue
        db.execute(
            "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, 0, ?, 'FINITE')",
            (trial_id, value),
        )
        attrs = {
            "sharpe": sharpe,
            "total_return": value / 10,
            "is_0_sharpe": sharpe + 0.5,
            "oos_0_sharpe": sharpe - 0.5,
            "is_1_sharpe": sharpe + 0.25,
            "oos_1_sharpe": sharpe - 0.25,
        }
        for key, v in attrs.items():
            db.execute(
                "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)",
                (trial_id, key, json.dumps(v)),
            )
    db.commit()
    db.close()


if __name__ == "__main__":
    main(sys.argv[1])
