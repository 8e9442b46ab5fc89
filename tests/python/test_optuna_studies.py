"""Optuna compatibility of our study files, checked with optuna==5.0.0 itself: a study written by
`etrading optimize` opened with `optuna.load_study` (trial count, best value and params,
states, distributions, attributes); a study Optuna created, continued by `etrading optimize
--resume`; several `etrading optimize` processes on one file at once; and a run killed with
SIGKILL then resumed (no duplicated grid point or trial number, RUNNING trials become FAIL);
and one stopped with Ctrl-C (SIGINT), which stores the batch in flight and leaves nothing RUNNING.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import optuna
import pytest

from conftest import REPO_ROOT, SAMPLE_DATA

SPEC = REPO_ROOT / "examples" / "rsi_ema.toml"

# The distributions examples/rsi_ema.toml's [params] stand for, as Optuna writes them.
RSI_EMA_DISTRIBUTIONS = {
    "rsi_window": optuna.distributions.CategoricalDistribution([14, 21]),
    "rsi_lower": optuna.distributions.IntDistribution(20, 40, step=5),
    "rsi_upper": optuna.distributions.IntDistribution(60, 80, step=5),
    "ema_long": optuna.distributions.CategoricalDistribution([50, 100, 200]),
    "leverage": optuna.distributions.IntDistribution(1, 10),
}


def optimize(etrading_bin: Path, db: Path, study: str, *args: str, check: bool = True):
    cmd = [
        str(etrading_bin), "optimize", str(SPEC), "--study", study,
        "--storage", f"sqlite:///{db}", "--data", str(SAMPLE_DATA), "--json", *args,
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def storage(db: Path) -> str:
    return f"sqlite:///{db}"  # db is absolute: sqlite:////abs/path


def test_optuna_loads_our_study(etrading_bin: Path, tmp_path: Path):
    db = tmp_path / "ours.db"
    proc = optimize(etrading_bin, db, "ours", "--sampler", "tpe", "--trials", "24",
                    "--batch", "8", "--seed", "3")
    summary = json.loads(proc.stdout)
    assert summary["schema"] == "etrading.optimize/1"
    assert summary["trials_run"] == 24

    study = optuna.load_study(study_name="ours", storage=storage(db))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 24
    assert [t.number for t in trials] == list(range(24))
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert summary["complete"] == len(complete) and summary["pruned"] == len(pruned)
    assert complete, "no complete trial"

    # Best value and params as we report them.
    best = max(complete, key=lambda t: (t.value, -t.number))
    assert study.best_trial.number == best.number == summary["best"]["number"]
    assert study.best_value == pytest.approx(summary["best"]["value"], rel=0, abs=0)
    assert study.best_params == summary["best"]["params"]

    for t in trials:
        assert t.distributions == RSI_EMA_DISTRIBUTIONS
        assert isinstance(t.params["rsi_window"], int) and t.params["rsi_window"] in (14, 21)
        attrs = t.user_attrs
        for key in ("total_return", "cagr", "max_drawdown", "win_rate", "n_trades",
                    "liquidations", "fees", "funding", "leverage", "data_hash",
                    "engine_version", "talib_version"):
            assert key in attrs, f"trial {t.number} lacks {key}"
        assert attrs["leverage"] == t.params["leverage"]
        assert isinstance(attrs["n_trades"], int)
        assert len(attrs["data_hash"]) == 64
        if t.state == optuna.trial.TrialState.PRUNED:
            assert attrs["prune_filter"] in ("liquidation", "min_trades", "drawdown_cap")
            assert attrs["prune_reason"].startswith(attrs["prune_filter"])
            assert t.value is None
        else:
            assert t.value == pytest.approx(attrs["full_objective"], rel=1e-12)
    study_attrs = study.user_attrs
    assert study_attrs["objective"] == "risk_adjusted"
    assert study_attrs["sampler"] == "tpe"
    assert "[params]" in study_attrs["spec"]

    # Optuna can keep writing to our file.
    study.optimize(lambda trial: trial.suggest_int("leverage", 1, 10) * 0.0, n_trials=1)
    assert len(study.trials) == 25


def test_we_continue_a_study_optuna_created(etrading_bin: Path, tmp_path: Path):
    db = tmp_path / "theirs.db"
    study = optuna.create_study(study_name="theirs", storage=storage(db), direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_categorical("rsi_window", [14, 21])
        trial.suggest_int("rsi_lower", 20, 40, step=5)
        trial.suggest_int("rsi_upper", 60, 80, step=5)
        trial.suggest_categorical("ema_long", [50, 100, 200])
        trial.suggest_int("leverage", 1, 10)
        trial.set_user_attr("source", "optuna")
        return -1.0 * trial.number

    study.optimize(objective, n_trials=5)
    running = study.ask(RSI_EMA_DISTRIBUTIONS)  # never told: left RUNNING
    assert running.number == 5

    proc = optimize(etrading_bin, db, "theirs", "--resume", "--sampler", "random",
                    "--trials", "12", "--batch", "4", "--seed", "1")
    summary = json.loads(proc.stdout)
    assert summary["failed_running_on_resume"] == 1
    assert summary["trials_run"] == 7  # 12 finished in all, 5 were there

    study = optuna.load_study(study_name="theirs", storage=storage(db))
    trials = study.get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(13))
    assert trials[5].state == optuna.trial.TrialState.FAIL
    assert all(t.user_attrs.get("source") == "optuna" for t in trials[:5])
    ours = trials[6:]
    assert all("data_hash" in t.user_attrs for t in ours)
    assert all(t.distributions == RSI_EMA_DISTRIBUTIONS for t in trials if t.number != 5)
    seen = [tuple(sorted(t.params.items())) for t in trials if t.number != 5]
    assert len(seen) == len(set(seen)), "a grid point was sampled twice"

    # We read Optuna's trials back through our own reader too.
    listed = subprocess.run([str(etrading_bin), "study", "list", "--storage", storage(db),
                             "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(listed.stdout)
    (entry,) = doc["studies"]
    assert entry["name"] == "theirs" and entry["trials"] == 13
    assert entry["states"]["FAIL"] == 1
    assert entry["best_value"] == pytest.approx(study.best_value)


def test_processes_writing_one_file_at_once(etrading_bin: Path, tmp_path: Path):
    db = tmp_path / "shared.db"
    procs = []
    for i in range(4):
        cmd = [str(etrading_bin), "optimize", str(SPEC), "--study", f"p{i}",
               "--storage", storage(db), "--data", str(SAMPLE_DATA), "--sampler", "random",
               "--trials", "40", "--batch", "4", "--seed", str(i), "--jobs", "1", "--json"]
        procs.append(subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert json.loads(out)["trials_run"] == 40
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()
    for i in range(4):
        study = optuna.load_study(study_name=f"p{i}", storage=storage(db))
        trials = study.get_trials(deepcopy=False)
        assert [t.number for t in trials] == list(range(40))
        assert all(t.state.is_finished() for t in trials)
        assert all(len(t.params) == 5 for t in trials)


def wait_for_finished_trials(proc: subprocess.Popen, db: Path, n: int) -> int:
    """Polls the study file until `n` trials are finished or the process ends; returns how many
    are finished."""
    deadline = time.monotonic() + 300
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                con = sqlite3.connect(db, timeout=5)
                committed = con.execute(
                    "SELECT COUNT(*) FROM trials WHERE state IN ('COMPLETE','PRUNED')").fetchone()[0]
                con.close()
            except sqlite3.OperationalError:
                continue
            if committed >= n:
                break
    return committed


def test_kill_9_then_resume(etrading_bin: Path, tmp_path: Path):
    db = tmp_path / "killed.db"
    cmd = [str(etrading_bin), "optimize", str(SPEC), "--study", "grid", "--storage",
           storage(db), "--data", str(SAMPLE_DATA), "--sampler", "grid", "--trials", "400",
           "--batch", "8", "--backend", "scalar", "--jobs", "1"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill it once some trials are committed.
    committed = wait_for_finished_trials(proc, db, 16)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert committed >= 16

    before = optuna.load_study(study_name="grid", storage=storage(db)).get_trials(deepcopy=False)
    left_running = [t.number for t in before if t.state == optuna.trial.TrialState.RUNNING]

    proc = optimize(etrading_bin, db, "grid", "--resume", "--sampler", "grid", "--trials", "400",
                    "--batch", "8")
    summary = json.loads(proc.stdout)
    assert summary["failed_running_on_resume"] == len(left_running)

    trials = optuna.load_study(study_name="grid", storage=storage(db)).get_trials(deepcopy=False)
    assert [t.number for t in trials] == list(range(len(trials)))
    for n in left_running:
        assert trials[n].state == optuna.trial.TrialState.FAIL
    finished = [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE,
                                                 optuna.trial.TrialState.PRUNED)]
    assert len(finished) == 400
    points = [tuple(sorted(t.params.items())) for t in finished]
    assert len(points) == len(set(points)), "a grid point was evaluated twice"
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in trials)


def test_ctrl_c_stops_cleanly_then_resume(etrading_bin: Path, tmp_path: Path):
    """SIGINT stops after the batch in flight: its trials are stored, none is left RUNNING, the
    summary says so, and --resume finishes the grid without evaluating a point twice."""
    db = tmp_path / "interrupted.db"
    cmd = [str(etrading_bin), "optimize", str(SPEC), "--study", "grid", "--storage",
           storage(db), "--data", str(SAMPLE_DATA), "--sampler", "grid", "--trials", "400",
           "--batch", "8", "--backend", "scalar", "--jobs", "1", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_finished_trials(proc, db, 16)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["interrupted"] is True
    assert 16 <= summary["trials_run"] < 400

    trials = optuna.load_study(study_name="grid", storage=storage(db)).get_trials(deepcopy=False)
    assert not any(t.state == optuna.trial.TrialState.RUNNING for t in trials)
    assert len(trials) == summary["trials_run"] == summary["study_trials"]

    proc = optimize(etrading_bin, db, "grid", "--resume", "--sampler", "grid", "--trials", "400",
                    "--batch", "8")
    summary = json.loads(proc.stdout)
    assert summary["failed_running_on_resume"] == 0
    assert summary["interrupted"] is False
    trials = optuna.load_study(study_name="grid", storage=storage(db)).get_trials(deepcopy=False)
    assert len(trials) == 400
    points = [tuple(sorted(t.params.items())) for t in trials]
    assert len(points) == len(set(points)), "a grid point was evaluated twice"


def test_a_resume_beside_a_live_run_is_refused(etrading_bin: Path, tmp_path: Path):
    """A --resume marks the RUNNING trials it finds FAIL: beside a live run of the same study
    that would fail the live run's trials and drop its results, so it is refused (the study's
    writer lock), and the live run finishes with every trial its own."""
    db = tmp_path / "live.db"
    cmd = [str(etrading_bin), "optimize", str(SPEC), "--study", "live", "--storage",
           storage(db), "--data", str(SAMPLE_DATA), "--sampler", "grid", "--trials", "200",
           "--batch", "8", "--backend", "scalar", "--jobs", "1", "--json"]
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_finished_trials(proc, db, 16)
    assert proc.poll() is None, "the run finished before a second writer could try"
    second = optimize(etrading_bin, db, "live", "--resume", "--sampler", "grid", "--trials",
                      "200", check=False)
    assert second.returncode == 1
    assert f'study "live" in {db} is being written by another etrading process (pid {proc.pid}' \
        in second.stderr, second.stderr
    # Another study in the same file is not locked.
    optimize(etrading_bin, db, "other", "--sampler", "random", "--trials", "8", "--batch", "8")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    summary = json.loads(stdout)
    assert summary["outcomes_dropped"] == 0
    trials = optuna.load_study(study_name="live", storage=storage(db)).get_trials(deepcopy=False)
    assert len(trials) == 200
    assert all(t.state != optuna.trial.TrialState.FAIL for t in trials)
    assert not (tmp_path / "live.db.study-live.lock").exists()
