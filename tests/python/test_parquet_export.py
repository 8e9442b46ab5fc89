"""Parquet exports read with pyarrow: `etrading study export NAME --format parquet` and
`etrading sweep ... --out FILE.parquet` hold the same columns, rows and values as the CSV
export of the same study or sweep, with typed columns (int64 numbers and counts, double
values and metrics, strings for states and reasons).
"""

from __future__ import annotations

import csv
import math
import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO_ROOT, SAMPLE_DATA

SPEC = REPO_ROOT / "examples" / "rsi_ema.toml"


def run(etrading_bin: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [str(etrading_bin), *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def check_cell(column: str, kind: pa.DataType, cell, text: str) -> None:
    """One Parquet cell against the CSV text of the same row and column."""
    where = f"column {column}: parquet {cell!r} vs csv {text!r}"
    if cell is None:
        assert text == "", where
    elif pa.types.is_int64(kind):
        assert cell == int(text), where
    elif pa.types.is_float64(kind):
        expect = float(text)  # also "NaN", "inf", "Infinity"
        assert (math.isnan(cell) and math.isnan(expect)) or cell == expect, where
    elif pa.types.is_boolean(kind):
        assert text in ("true", "false") and cell == (text == "true"), where
    elif pa.types.is_string(kind):
        assert cell == text, where
    else:
        pytest.fail(f"column {column}: unexpected type {kind}")


def check_same_table(parquet: Path, csv_path: Path) -> pa.Table:
    """The Parquet file holds the CSV's columns in order, its rows in order, and every cell's
    value; returns the table."""
    table = pq.read_table(parquet)
    header, rows = read_csv(csv_path)
    assert table.column_names == header
    assert table.num_rows == len(rows) > 0
    for c, name in enumerate(header):
        kind = table.schema.field(name).type
        for r, cell in enumerate(table.column(name).to_pylist()):
            check_cell(f"{name} (row {r})", kind, cell, rows[r][c])
    return table


def test_study_export_parquet_matches_csv(etrading_bin: Path, tmp_path: Path):
    db = tmp_path / "study.db"
    run(etrading_bin, "optimize", str(SPEC), "--study", "pq", "--storage", f"sqlite:///{db}",
        "--data", str(SAMPLE_DATA), "--sampler", "random", "--trials", "24", "--batch", "8",
        "--seed", "5", "--json")
    csv_path, parquet = tmp_path / "trials.csv", tmp_path / "trials.parquet"
    for fmt, out in (("csv", csv_path), ("parquet", parquet)):
        run(etrading_bin, "study", "export", "pq", "--storage", f"sqlite:///{db}",
            "--format", fmt, "--out", str(out))
    table = check_same_table(parquet, csv_path)

    assert table.num_rows == 24
    schema = table.schema
    assert schema.field("number").type == pa.int64()
    assert schema.field("value").type == pa.float64()
    assert schema.field("state").type == pa.string()
    assert schema.field("params_rsi_window").type == pa.int64()
    assert schema.field("params_leverage").type == pa.int64()
    assert schema.field("user_attrs_total_return").type == pa.float64()
    assert schema.field("user_attrs_data_hash").type == pa.string()
    assert table.column("number").to_pylist() == list(range(24))
    states = set(table.column("state").to_pylist())
    assert states <= {"COMPLETE", "PRUNED"} and "COMPLETE" in states
    # PRUNED trials have no value; COMPLETE ones do.
    for state, value in zip(table.column("state").to_pylist(), table.column("value").to_pylist()):
        assert (value is None) == (state == "PRUNED"), (state, value)


def test_parquet_export_needs_an_output_file(etrading_bin: Path, tmp_path: Path):
    db = tmp_path / "study.db"
    run(etrading_bin, "optimize", str(SPEC), "--study", "s", "--storage", f"sqlite:///{db}",
        "--data", str(SAMPLE_DATA), "--sampler", "random", "--trials", "4", "--batch", "4",
        "--json")
    proc = subprocess.run(
        [str(etrading_bin), "study", "export", "s", "--storage", f"sqlite:///{db}",
         "--format", "parquet"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode != 0
    assert "give --out FILE.parquet" in proc.stderr


SMALL_GRID = ["--set", "ema_long=200", "--set", "rsi_window=14", "--set", "rsi_lower=30",
              "--set", "rsi_upper=70"]


def test_sweep_parquet_matches_csv(etrading_bin: Path, tmp_path: Path):
    csv_path, parquet = tmp_path / "sweep.csv", tmp_path / "sweep.parquet"
    for out in (csv_path, parquet):
        run(etrading_bin, "sweep", str(SPEC), "--data", str(SAMPLE_DATA), *SMALL_GRID,
            "--out", str(out), "--quiet", "--json")
    table = check_same_table(parquet, csv_path)
    assert table.num_rows == 10  # leverage 1..10
    schema = table.schema
    assert schema.field("grid_index").type == pa.int64()
    assert schema.field("leverage").type == pa.int64()
    assert schema.field("objective").type == pa.float64()
    assert schema.field("discarded").type == pa.string()
    assert schema.field("full_n_trades").type == pa.int64()
    assert schema.field("full_total_return").type == pa.float64()
    assert sorted(table.column("leverage").to_pylist()) == list(range(1, 11))
    meta = pq.ParquetFile(parquet).metadata
    assert meta.num_row_groups >= 1
    assert meta.created_by.startswith("etrading ")


def sweep(etrading_bin: Path, out: Path, *args: str, hook: str | None = None):
    """`etrading sweep` of the small grid into `out`; `hook` sets ETRADING_SWEEP_TEST (batches
    of a few sets, then a deterministic Ctrl-C or kill, see cli/src/sweep_cmd.rs)."""
    env = {k: v for k, v in os.environ.items() if k != "ETRADING_SWEEP_TEST"}
    if hook is not None:
        env["ETRADING_SWEEP_TEST"] = hook
    cmd = [str(etrading_bin), "sweep", str(SPEC), "--data", str(SAMPLE_DATA), *SMALL_GRID,
           "--out", str(out), "--quiet", "--json", *args]
    return subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False,
                          env=env)


def test_sweep_parquet_resumes_after_ctrl_c_and_kill(etrading_bin: Path, tmp_path: Path):
    csv_path, parquet = tmp_path / "sweep.csv", tmp_path / "sweep.parquet"
    parts = tmp_path / "sweep.parquet.parts"
    run(etrading_bin, "sweep", str(SPEC), "--data", str(SAMPLE_DATA), *SMALL_GRID,
        "--out", str(csv_path), "--quiet", "--json")

    # Ctrl-C after two batches of 3 sets: a closed file of 6 rows, no parts left.
    proc = sweep(etrading_bin, parquet, hook="batch=3,interrupt=2")
    assert proc.returncode == 1, proc.stderr
    assert "holds the 6 sets finished" in proc.stderr
    assert pq.read_table(parquet).num_rows == 6 and not parts.exists()

    # Resumed, then killed after one more batch: the file is untouched, the batch in a part.
    proc = sweep(etrading_bin, parquet, "--resume", hook="batch=3,abort=1")
    assert proc.returncode == 137, proc.stderr
    assert pq.read_table(parquet).num_rows == 6
    assert [p.name for p in parts.iterdir()] == ["part-000001.parquet"]
    assert pq.read_table(parts / "part-000001.parquet").num_rows == 3

    proc = sweep(etrading_bin, parquet, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert not parts.exists()
    # Every grid point once, in the order and with the values of the uninterrupted CSV.
    table = check_same_table(parquet, csv_path)
    assert table.num_rows == 10
    assert table.schema.field("grid_index").type == pa.int64()
    assert table.schema.field("full_total_return").type == pa.float64()
    meta = pq.ParquetFile(parquet).metadata
    kv = meta.metadata
    assert kv[b"etrading.schema"] == b"etrading.sweep/1"
    assert kv[b"etrading.sweep.spec"] == SPEC.read_bytes()
    assert kv[b"etrading.sweep.set"] == b"ema_long=200 rsi_lower=30 rsi_upper=70 rsi_window=14"
    assert meta.num_row_groups == 4  # 3 + 3 from the interrupted run, 3, then 1
    assert meta.created_by.startswith("etrading ")


def test_sweep_parquet_resume_refuses_another_sweep(etrading_bin: Path, tmp_path: Path):
    parquet = tmp_path / "sweep.parquet"
    proc = sweep(etrading_bin, parquet, hook="batch=4,interrupt=1")
    assert proc.returncode == 1, proc.stderr
    stored = parquet.read_bytes()
    proc = sweep(etrading_bin, parquet, "--resume", "--capital", "5000")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {parquet}: another sweep's output: the capital differs")
    assert parquet.read_bytes() == stored


def test_sweep_csv_resumes_after_real_kills(etrading_bin: Path, tmp_path: Path):
    """SIGKILL at arbitrary moments of a CSV sweep (wherever the kernel stops it: mid-batch,
    mid-row), each followed by --resume: the final file holds every grid point exactly once,
    with the values of an uninterrupted run."""
    import random
    import signal
    import time

    grid = ["--set", "rsi_window=14", "--set", "ema_long=200"]  # 5 x 5 x 10 = 250 sets
    reference = tmp_path / "reference.csv"
    run(etrading_bin, "sweep", str(SPEC), "--data", str(SAMPLE_DATA), *grid,
        "--out", str(reference), "--quiet", "--json")
    out = tmp_path / "killed.csv"
    env = dict(os.environ, ETRADING_SWEEP_TEST="batch=7,sleep_ms=30")
    rng = random.Random(7)
    kills = 0
    for attempt in range(6):
        cmd = [str(etrading_bin), "sweep", str(SPEC), "--data", str(SAMPLE_DATA), *grid,
               "--out", str(out), "--quiet", "--json"] + (["--resume"] if attempt else [])
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        size = out.stat().st_size if out.exists() else 0
        deadline = time.monotonic() + 120
        # Let it write something new, then kill it a random moment later.
        while proc.poll() is None and time.monotonic() < deadline:
            if out.exists() and out.stat().st_size > size:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.25))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 3, "the sweep finished before it could be killed often enough"
    proc = subprocess.run([str(etrading_bin), "sweep", str(SPEC), "--data", str(SAMPLE_DATA),
                           *grid, "--out", str(out), "--quiet", "--json", "--resume"],
                          cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    header, rows = read_csv(out)
    ref_header, ref_rows = read_csv(reference)
    assert header == ref_header
    assert len(rows) == 250
    assert sorted(rows) == sorted(ref_rows)
