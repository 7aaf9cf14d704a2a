"""Ctrl-C during training keeps what is done, says how to resume, and the resume finishes the run
exactly as an uninterrupted run would have (same selection, same curve)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_dirs

ARGS = ["--dataset", "digits", "--label-budget", "30", "--batch-budget", "16", "--batch-size", "16",
        "--eval-every", "4", "--image-size", "32", "--selector", "coreset", "--seed", "5",
        "--set", "checkpoint_every=4"]


def _cli(*args: str, env: dict) -> list[str]:
    return [sys.executable, "-m", "vecaf_bench.cli", *args]


def _wait_for_eval(out: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        for ev in out.glob("*/events.jsonl"):
            if '"event": "eval"' in ev.read_text():
                return
        time.sleep(0.05)
    raise AssertionError("no evaluation event appeared")


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, shared_cache: Path) -> tuple[dict, list]:
    """The run never stopped, made once for both tests: (summary, selection)."""
    env = {**os.environ, "VECAF_BENCH_CACHE": str(shared_cache), "WANDB_MODE": "disabled"}
    out = tmp_path_factory.mktemp("straight")
    r = subprocess.run(_cli("run", *ARGS, "--out", str(out), env=env), env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    ref_dir = run_dirs(out)[0]
    return json.loads((ref_dir / "summary.json").read_text()), json.loads((ref_dir / "selected.json").read_text())


def test_ctrl_c_then_resume_equals_uninterrupted(tmp_path, shared_cache, straight, cli):
    env = {**os.environ, "VECAF_BENCH_CACHE": str(shared_cache), "WANDB_MODE": "disabled"}
    out = tmp_path / "runs"
    proc = subprocess.Popen(_cli("run", *ARGS, "--out", str(out), env=env), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    _wait_for_eval(out, proc)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "Traceback" not in output
    run_dir = run_dirs(out)[0]
    assert f"Resume with: vecaf-bench run --resume {run_dir}" in output.replace("\n", "")
    partial = json.loads((run_dir / "summary.json").read_text())
    assert partial["status"] == "interrupted" and 4 <= partial["steps"] < 16
    assert (run_dir / "checkpoint.pt").is_file() and (run_dir / "selected.json").is_file()

    resumed = subprocess.run(_cli("run", "--resume", str(run_dir), env=env), env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    done = json.loads((run_dir / "summary.json").read_text())
    assert done["status"] == "finished" and done["steps"] == 16
    assert not (run_dir / "checkpoint.pt").exists()

    ref, ref_sel = straight
    assert json.loads((run_dir / "selected.json").read_text()) == ref_sel
    assert [(p["step"], round(p["top1"], 4)) for p in done["curve"]] == [
        (p["step"], round(p["top1"], 4)) for p in ref["curve"]]

    again = cli("run", "--resume", run_dir)
    assert again.exit_code == 2 and "already finished" in again.output


def test_a_damaged_checkpoint_is_kept_aside_and_named(tmp_path, cli):
    """A truncated checkpoint (a killed save, a full disk) is not torch's zip-reader traceback:
    one paragraph that says it is damaged, where it was put, and how to start again."""
    run_dir = tmp_path / "runs" / "r1"
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("selector: random\ndataset: digits\n")
    (run_dir / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    r = cli("run", "--resume", run_dir)
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert "is damaged" in text and "kept aside" in text and "vecaf-bench run --config" in text
    assert "Traceback" not in r.output
    assert not (run_dir / "checkpoint.pt").exists() and list(run_dir.glob("checkpoint.pt.damaged-*"))


def test_kill_9_mid_training_resumes_to_the_uninterrupted_result(tmp_path, shared_cache, straight):
    """No signal to catch (kill -9, the out-of-memory killer): the run resumes from its last
    periodic checkpoint and ends with the selection and curve of a run never stopped."""
    env = {**os.environ, "VECAF_BENCH_CACHE": str(shared_cache), "WANDB_MODE": "disabled"}
    out = tmp_path / "runs"
    proc = subprocess.Popen(_cli("run", *ARGS, "--out", str(out), env=env), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:  # an evaluation after a periodic checkpoint: mid-training for sure
        assert proc.poll() is None, proc.communicate()
        evs = [ev.read_text() for ev in out.glob("*/events.jsonl")]
        if evs and '"step": 8' in evs[0] and any(out.glob("*/checkpoint.pt")):
            break
        time.sleep(0.02)
    proc.kill()
    proc.communicate(timeout=60)
    run_dir = run_dirs(out)[0]
    assert not (run_dir / "summary.json").exists(), "killed before the end"
    resumed = subprocess.run(_cli("run", "--resume", str(run_dir), env=env), env=env,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resuming" in resumed.stderr and "at step 0/16" not in resumed.stderr
    done = json.loads((run_dir / "summary.json").read_text())
    ref, ref_sel = straight
    assert done["status"] == "finished" and done["test_top1"] == ref["test_top1"]
    assert json.loads((run_dir / "selected.json").read_text()) == ref_sel
    assert [(p["step"], p["top1"]) for p in done["curve"]] == [(p["step"], p["top1"]) for p in ref["curve"]]
