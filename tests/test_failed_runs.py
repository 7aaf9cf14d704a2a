"""A run that fails leaves nothing that suites and the leaderboard could mistake for a result:
no half-made folder before anything was computed; a summary that says "failed" after."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import TINY

BROKEN = '''
import numpy as np
from vecaf_bench.api import Capabilities, hookimpl

class Dupes:
    capabilities = Capabilities()
    def select(self, ctx, count):
        return [0] * count

class FailsAtStep3:
    def __init__(self, config, run_dir):
        pass
    @hookimpl
    def vecaf_bench_evaluate(self, run, step, metrics):
        if step == 3:
            raise RuntimeError("disk quota exceeded")

@hookimpl
def vecaf_bench_add_selectors():
    return {"dupes": Dupes}

@hookimpl
def vecaf_bench_add_trackers():
    return {"fails_at_3": FailsAtStep3}
'''


def _plugin(tmp_path, monkeypatch) -> None:
    (tmp_path / "failing_plugins.py").write_text(BROKEN)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("failing_plugins", None)


def test_a_run_failing_before_training_leaves_no_folder(tmp_path, monkeypatch, cli):
    _plugin(tmp_path, monkeypatch)
    out = tmp_path / "runs"
    r = cli("run", *TINY, "--plugin", "failing_plugins", "--selector", "dupes", "--out", out)
    assert r.exit_code == 2 and "broke the selector contract" in r.output
    assert not out.exists() or not any(p.is_dir() for p in out.iterdir()), list(out.iterdir())
    assert "removed the unfinished run folder" in r.output


def test_a_run_failing_after_its_first_checkpoint_says_failed_and_resumes(tmp_path, monkeypatch, cli):
    _plugin(tmp_path, monkeypatch)
    out = tmp_path / "runs"
    with pytest.raises(RuntimeError, match="disk quota exceeded"):  # a plugin's bug keeps its traceback
        cli("run", *TINY, "--plugin", "failing_plugins", "--set", "trackers=[fails_at_3]", "--out", out)
    (run_dir,) = [p for p in out.iterdir() if p.is_dir()]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "disk quota exceeded" in summary["error"] and summary["resumable"]
    assert (run_dir / "checkpoint.pt").is_file()
