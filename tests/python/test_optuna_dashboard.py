"""optuna-dashboard (pinned in requirements.txt) opens a study file written by `etrading`: its
own WSGI application (`optuna_dashboard.wsgi(storage)`, what `optuna-dashboard sqlite:///...`
serves) is called in-process with WSGI environs, and its JSON API must list our studies and
return every trial with the params, values, states and user attributes that our own reader
exports (`etrading study export --format json`) and `etrading optimize` reported.
"""

from __future__ import annotations

import io
import json
import numbers
import subprocess
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna_dashboard
import pytest

from conftest import REPO_ROOT, SAMPLE_DATA

SPEC = REPO_ROOT / "examples" / "rsi_ema.toml"


def run(etrading_bin: Path, *args: str) -> str:
    cmd = [str(etrading_bin), *args]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}")
    return proc.stdout


def get(app, path: str) -> tuple[str, object]:
    """GET `path` from the WSGI app: (status line, parsed JSON body)."""
    environ: dict = {}
    setup_testing_defaults(environ)
    environ["PATH_INFO"] = path
    environ["REQUEST_METHOD"] = "GET"
    environ["wsgi.input"] = io.BytesIO(b"")
    status: list[str] = []

    def start_response(line, headers, exc_info=None):
        status.append(line)

    body = b"".join(app(environ, start_response))
    return status[0], json.loads(body) if body else None


def python_str(value) -> str:
    """The dashboard's text of an attribute or param value (its `serialize_attrs`): strings as
    they are, `str()` of a Python number (14, 0.5, True), JSON for anything else (null)."""
    if isinstance(value, str):
        return value
    if isinstance(value, numbers.Real):
        return str(value)
    return json.dumps(value)


@pytest.fixture(scope="module")
def study_file(etrading_bin: Path, tmp_path_factory) -> Path:
    """One file with two studies: a TPE optimisation (COMPLETE and PRUNED trials) and a
    small sweep."""
    db = tmp_path_factory.mktemp("dashboard") / "studies.db"
    storage = f"sqlite:///{db}"
    run(etrading_bin, "optimize", str(SPEC), "--study", "tpe-run", "--storage", storage,
        "--data", str(SAMPLE_DATA), "--sampler", "tpe", "--trials", "24", "--batch", "8",
        "--seed", "11", "--json")
    run(etrading_bin, "sweep", str(SPEC), "--study", "grid", "--storage", storage,
        "--data", str(SAMPLE_DATA), "--set", "ema_long=200", "--set", "rsi_window=14",
        "--set", "rsi_lower=30", "--set", "rsi_upper=70", "--quiet", "--json")
    return db


def export(etrading_bin: Path, db: Path, name: str) -> dict:
    return json.loads(run(etrading_bin, "study", "export", name, "--storage", f"sqlite:///{db}",
                          "--format", "json"))


def test_dashboard_lists_our_studies(etrading_bin: Path, study_file: Path):
    app = optuna_dashboard.wsgi(f"sqlite:///{study_file}")
    status, body = get(app, "/api/studies")
    assert status.startswith("200"), (status, body)
    summaries = {s["study_name"]: s for s in body["study_summaries"]}
    assert set(summaries) == {"tpe-run", "grid"}
    for name, s in summaries.items():
        assert s["directions"] == ["maximize"]
        # The study's attributes (spec, objective, provenance) as our reader has them.
        ours = export(etrading_bin, study_file, name)
        attrs = {a["key"]: a["value"] for a in s["user_attrs"]}
        assert attrs == {k: python_str(v) for k, v in ours["user_attrs"].items()}, name
        assert attrs["strategy_id"] == "rsi_ema"
        assert attrs["sampler"] == ("tpe" if name == "tpe-run" else "sweep")


@pytest.mark.parametrize("name", ["tpe-run", "grid"])
def test_dashboard_returns_our_trials(etrading_bin: Path, study_file: Path, name: str):
    ours = export(etrading_bin, study_file, name)
    app = optuna_dashboard.wsgi(f"sqlite:///{study_file}")
    _, listing = get(app, "/api/studies")
    study_id = next(s["study_id"] for s in listing["study_summaries"] if s["study_name"] == name)
    status, detail = get(app, f"/api/studies/{study_id}")
    assert status.startswith("200"), (status, detail)
    assert detail["name"] == name
    trials = detail["trials"]
    assert len(trials) == len(ours["trials"]) > 0
    assert [t["number"] for t in trials] == [t["number"] for t in ours["trials"]]

    states = set()
    for theirs, mine in zip(trials, ours["trials"]):
        where = f"{name} trial {mine['number']}"
        states.add(mine["state"])
        # States: Optuna's enum name, capitalised by the dashboard.
        assert theirs["state"] == mine["state"].capitalize(), where
        # Values: COMPLETE trials carry ours; PRUNED ones none.
        if mine["state"] == "COMPLETE":
            assert theirs["values"] == mine["values"], where
        else:
            assert theirs.get("values") in (None, []), where
        # Params: every param with its distribution, external value as Python prints it.
        params = {p["name"]: p for p in theirs["params"]}
        assert set(params) == set(mine["params"]), where
        for pname, value in mine["params"].items():
            assert params[pname]["param_external_value"] == python_str(value), (where, pname)
            assert params[pname]["param_external_pytyp"] == "<class 'int'>", (where, pname)
        assert params["leverage"]["distribution"]["type"] == "IntDistribution"
        assert params["rsi_window"]["distribution"]["type"] == "CategoricalDistribution"
        # User attributes: the same keys with the same values.
        theirs_attrs = {a["key"]: a["value"] for a in theirs["user_attrs"]}
        assert len(theirs_attrs) == len(theirs["user_attrs"]), where
        mine_attrs = {k: python_str(v) for k, v in mine["user_attrs"].items()}
        assert theirs_attrs == mine_attrs, where
        for key in ("total_return", "max_drawdown", "n_trades", "data_hash", "engine_version"):
            assert key in theirs_attrs, (where, key)
        if mine["state"] == "PRUNED":
            assert theirs_attrs.get("prune_reason"), where
    assert "COMPLETE" in states, name

    # The best trial the dashboard computes is ours.
    complete = [t for t in ours["trials"] if t["state"] == "COMPLETE"]
    assert complete, f"{name}: no COMPLETE trial"
    best = max(complete, key=lambda t: (t["values"][0], -t["number"]))
    assert [t["number"] for t in detail["best_trials"]] == [best["number"]]
    # The search space the dashboard derives holds the spec's params.
    space = {p["name"] for p in detail["union_search_space"]}
    assert space == set(ours["trials"][0]["params"])
