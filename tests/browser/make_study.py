"""Writes the tiny hand-made study the browser test reads: Optuna 5.0.0's SQLite schema
(db/src/study/schema.sql, the schema our study writer creates) with one study, `hand`, over
examples/rsi_ema.toml. Eight trials: a 3 x 2 grid of leverage x rsi_window (cell (2, 14) twice)
and one FAIL. Values (MAXIMIZE) and so the mean heatmap of `value` by leverage x rsi_window:

                leverage=1  leverage=2        leverage=3
  rsi_window=14    0.5      (1.0+2.0)/2=1.5     -0.5
  rsi_window=21    2.0      1.5                  0.25

With `--big N`, writes instead the study `big` of N synthetic trials (the browser test's
scaled-down version of the 1,000,000-trial benchmark) and, in EXPECT.json, what the study
browser must show for it, computed here independently of the viewer.

Usage: python3 make_study.py OUT.db
       python3 make_study.py --big N OUT.db EXPECT.json
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


def new_db(out: str) -> sqlite3.Connection:
    path = Path(out)
    if path.exists():
        path.unlink()
    db = sqlite3.connect(path)
    db.executescript((Path(__file__).resolve().parents[2] / "db" / "src" / "study" / "schema.sql").read_text())
    db.execute("INSERT INTO version_info VALUES (1, 12, '5.0.0')")
    db.execute("INSERT INTO alembic_version VALUES ('v3.2.0.a')")
    return db


def big(n: int, out: str, expect_path: str) -> None:
    """N trials: leverage 1..10, rsi_window 14/21, rsi_lower 20..40; every 97th trial PRUNED
    without a value; values are multiples of 1/64 (exact in f32, so the viewer shows them
    exactly), with ties."""
    db = new_db(out)
    db.execute("INSERT INTO studies VALUES (1, 'big')")
    db.execute("INSERT INTO study_directions VALUES (1, 'MAXIMIZE', 1, 0)")
    trials, params, values, attrs = [], [], [], []
    rows = []
    for i in range(n):
        lev, window, lower = 1 + i % 10, (14, 21)[i // 10 % 2], 20 + 5 * (i // 20 % 5)
        pruned = i % 97 == 96
        value = None if pruned else ((i * 7919) % 2001 - 1000) / 64
        trials.append((i + 1, i, "PRUNED" if pruned else "COMPLETE"))
        for name, v in (("leverage", lev), ("rsi_window", window), ("rsi_lower", lower)):
            params.append((i + 1, name, float(v), DISTS[name]))
        if value is not None:
            values.append((i + 1, value))
            attrs.append((i + 1, "sharpe", json.dumps(value / 8)))
        rows.append((i, lev, window, value))
    db.executemany("INSERT INTO trials VALUES (?, ?, 1, ?, NULL, NULL)", trials)
    db.executemany(
        "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) VALUES (?, ?, ?, ?)", params
    )
    db.executemany(
        "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES (?, 0, ?, 'FINITE')", values
    )
    db.executemany("INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?, ?, ?)", attrs)
    db.commit()
    db.close()
    # What the browser must show. Sorting puts missing values last either way, ties by number.
    have = [r for r in rows if r[3] is not None]
    missing = [r[0] for r in rows if r[3] is None]
    desc = [r[0] for r in sorted(have, key=lambda r: (-r[3], r[0]))] + missing
    asc = [r[0] for r in sorted(have, key=lambda r: (r[3], r[0]))] + missing
    cells = {}
    for _, lev, window, value in have:
        cells.setdefault(f"{lev},{window}", []).append(value)
    expect = {
        "trials": n,
        "first_desc": desc[0],
        "first_asc": asc[0],
        "last_asc": asc[-1],
        "row_1000_desc": desc[1000],
        "filtered": sum(1 for _, lev, _, v in have if lev <= 5 and v > 0),
        "heatmap_mean": {k: sum(v) / len(v) for k, v in sorted(cells.items())},
    }
    Path(expect_path).write_text(json.dumps(expect, indent=1) + "\n")


def main(out: str) -> None:
    db = new_db(out)
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
    if sys.argv[1] == "--big":
        big(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        main(sys.argv[1])
