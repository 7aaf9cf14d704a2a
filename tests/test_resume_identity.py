"""--resume continues a run only under the config it started with, and SIGTERM (what SLURM and
Kubernetes send before preemption) stops a run with a checkpoint, as Ctrl-C does.

One run is stopped by SIGTERM at step 3 (a plugin that signals its own process) and copied for
each test, which then edits what a user might edit."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vecaf_bench.cli import app

ARGS = ["--dataset", "digits", "--label-budget", "30", "--batch-budget", "6", "--batch-size", "16",
        "--eval-every", "3", "--image-size", "32", "--selector", "coreset", "--seed", "0"]

SIGNALLER = '''
import os, signal
from vecaf_bench.api import hookimpl

@hookimpl
def vecaf_bench_evaluate(run, step, metrics):
    if step == 3 and not run.resumed:
        os.kill(os.getpid(), signal.SIGTERM)
'''


def _cli(*args: object):
    return CliRunner(env={"COLUMNS": "400"}).invoke(app, [str(a) for a in args], catch_exceptions=False)


def _text(r) -> str:
    return " ".join(r.output.split())


@pytest.fixture(scope="module")
def stopped(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> dict:
    """A run stopped by SIGTERM after step 3, and the same run uninterrupted."""
    base = tmp_path_factory.mktemp("stopped")
    (base / "sigterm_at_3.py").write_text(SIGNALLER)
    sys.path.insert(0, str(base))
    mp = pytest.MonkeyPatch()
    mp.setenv("VECAF_BENCH_CACHE", str(shared_cache))
    mp.setenv("WANDB_MODE", "disabled")
    try:
        r = _cli("run", *ARGS, "--plugin", "sigterm_at_3", "--out", base / "runs")
        straight = _cli("run", *ARGS, "--out", base / "straight")
    finally:
        mp.undo()
    assert straight.exit_code == 0, straight.output
    run_dir = next((base / "runs").iterdir())
    ref_dir = next((base / "straight").iterdir())
    return {"result": r, "dir": run_dir, "ref": json.loads((ref_dir / "summary.json").read_text()),
            "ref_selected": json.loads((ref_dir / "selected.json").read_text())}


def _copy(stopped: dict, tmp_path: Path) -> Path:
    dest = tmp_path / "runs" / stopped["dir"].name
    shutil.copytree(stopped["dir"], dest)
    return dest


def _edit_config(run_dir: Path, **changes: object) -> None:
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    for key, value in changes.items():
        section, _, sub = key.partition(".")
        if sub:
            cfg[section][sub] = value
        else:
            cfg[key] = value
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_sigterm_stops_after_the_step_with_a_checkpoint(stopped):
    r, run_dir = stopped["result"], stopped["dir"]
    assert r.exit_code == 143, r.output
    assert "SIGTERM: stopping after the current step" in r.output
    assert f"Resume with: vecaf-bench run --resume {run_dir}" in _text(r)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["stopped_by"] == "SIGTERM" and summary["steps"] == 3
    assert (run_dir / "checkpoint.pt").is_file()
    assert (run_dir / "checkpoint.prev.pt").is_file(), "the checkpoint after the selection round stays as the fallback"


@pytest.mark.parametrize("key,value,shown", [
    ("seed", 1, "seed: 0 when the run started, 1 now"),
    ("label_budget", "20", "label_budget: '30' when the run started, '20' now"),
    ("train.lr", 0.5, "train.lr: 0.02 when the run started, 0.5 now"),
])
def test_an_edited_config_yaml_is_refused_naming_the_field(stopped, tmp_path, key, value, shown):
    run_dir = _copy(stopped, tmp_path)
    _edit_config(run_dir, **{key: value})
    r = _cli("run", "--resume", run_dir)
    assert r.exit_code == 2, r.output
    text = _text(r)
    assert "no longer matches the run its checkpoint holds" in text and shown in text, text
    assert "Traceback" not in r.output
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted", "nothing was written"


def test_another_runs_config_is_refused(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path)
    other = yaml.safe_load((run_dir / "config.yaml").read_text())
    other.update(selector="random", batch_budget=33)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(other))
    r = _cli("run", "--resume", run_dir)
    assert r.exit_code == 2
    text = _text(r)
    assert "batch_budget: 6 when the run started, 33 now" in text and "selector: 'coreset' when" in text


@pytest.mark.parametrize("flags,shown", [
    (["--seed", "3"], "seed: 0 when the run started, 3 now"),
    (["--batch-budget", "9"], "batch_budget: 6 when the run started, 9 now"),
    (["--selector", "random"], "selector: 'coreset' when the run started, 'random' now"),
    (["--set", "train.lr=0.1"], "train.lr: 0.02 when the run started, 0.1 now"),
])
def test_flags_that_change_the_run_are_refused_with_resume(stopped, tmp_path, flags, shown):
    run_dir = _copy(stopped, tmp_path)
    r = _cli("run", "--resume", run_dir, *flags)
    assert r.exit_code == 2, r.output
    text = _text(r)
    assert "would change what it computes" in text and shown in text, text


def test_out_and_config_are_refused_with_resume(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path)
    r = _cli("run", "--resume", run_dir, "--out", tmp_path / "elsewhere")
    assert r.exit_code == 2 and "stays in its folder" in _text(r)
    r = _cli("run", "--resume", run_dir, "--config", run_dir / "config.yaml")
    assert r.exit_code == 2 and "cannot be given with --resume" in _text(r)


def test_a_moved_run_resumes_with_an_allowed_flag_to_the_uninterrupted_result(stopped, tmp_path):
    """--device is applied and said; the run, moved to another folder, finishes there with the
    selection and curve of the run that was never stopped, and prints where its results are."""
    moved = tmp_path / "moved" / "my-run"
    shutil.copytree(stopped["dir"], moved)
    r = _cli("run", "--resume", moved, "--device", "cpu")
    assert r.exit_code == 0, r.output
    assert "resume: device = 'cpu' (the run had 'auto')" in _text(r)
    assert str(moved) in _text(r)
    done = json.loads((moved / "summary.json").read_text())
    assert done["status"] == "finished" and done["steps"] == 6
    assert done["identity_hash"] == stopped["ref"]["identity_hash"]
    assert json.loads((moved / "selected.json").read_text()) == stopped["ref_selected"]
    assert [(p["step"], p["top1"]) for p in done["curve"]] == [(p["step"], p["top1"]) for p in stopped["ref"]["curve"]]
    assert not (moved / "checkpoint.pt").exists() and not (moved / "checkpoint.prev.pt").exists()


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(stopped, tmp_path):
    run_dir = _copy(stopped, tmp_path)
    data = (run_dir / "checkpoint.pt").read_bytes()
    (run_dir / "checkpoint.pt").write_bytes(data[: len(data) // 3])  # a save killed half way
    r = _cli("run", "--resume", run_dir)
    assert r.exit_code == 0, r.output
    text = _text(r)
    assert "is damaged" in text and "Resuming from the previous one, 'checkpoint.prev.pt' (step 0)" in text, text
    assert list(run_dir.glob("checkpoint.pt.damaged-*")), "the damaged file is kept, never deleted"
    done = json.loads((run_dir / "summary.json").read_text())
    assert [(p["step"], p["top1"]) for p in done["curve"]] == [(p["step"], p["top1"]) for p in stopped["ref"]["curve"]]
