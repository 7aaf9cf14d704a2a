"""A third-party selector, installed for real, is found through its entry point and runs end to end.

Also `--plugin module.path` for a module that is only on PYTHONPATH: a broken selector there
stops the run with exit code 2 and a message naming it, not a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "vecaf-bench-example-plugin"
# a tiny run: digits at 32 px, 20 labels, 4 optimizer steps, one evaluation at the end
TINY = ["--dataset", "digits", "--label-budget", "20", "--batch-budget", "4", "--eval-every", "0", "--image-size", "32"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # shared by the runs in this module, so pool features are extracted once
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The example package pip-installed (offline) into a fresh target folder."""
    src = tmp_path_factory.mktemp("src") / EXAMPLE.name
    # build from a copy: setuptools writes build/ and *.egg-info beside the sources
    shutil.copytree(EXAMPLE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    target = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
         "--disable-pip-version-check", "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (target / "vecaf_bench_example" / "class_balanced.py").is_file()
    return target


def _env(cache_dir: Path, pythonpath: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(pythonpath),
        VECAF_BENCH_CACHE=str(cache_dir),
        WANDB_MODE="disabled",
        COLUMNS="200",  # rich: one table row per line
        NO_COLOR="1",
    )
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def _cli() -> list[str]:
    return [sys.executable, "-m", "vecaf_bench.cli"]


def test_installed_plugin_is_listed_with_its_package(installed, cache_dir, tmp_path):
    proc = _run([*_cli(), "list", "selectors"], _env(cache_dir, installed), tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if "class_balanced" in line]
    assert rows, proc.stdout
    assert "vecaf-bench-example-plugin" in rows[0] and "0.1.0" in rows[0], rows[0]
    # the built-ins are still there, from the core package
    assert any("coreset" in line and "vecaf-bench " in line for line in proc.stdout.splitlines()), proc.stdout


def test_installed_plugin_runs_end_to_end(installed, cache_dir, tmp_path):
    out = tmp_path / "runs"
    proc = _run(
        [*_cli(), "run", "--selector", "class_balanced", *TINY, "--out", str(out)], _env(cache_dir, installed), tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summaries = list(out.glob("*/summary.json"))
    assert len(summaries) == 1, list(out.rglob("*"))
    summary = json.loads(summaries[0].read_text())
    assert summary["selector"] == "class_balanced"
    assert summary["status"] == "finished"
    assert summary["uses"] == ["labels"]
    assert summary["label_budget"] == 20
    assert summary["versions"].get("vecaf-bench-example-plugin") == "0.1.0"
    picked = json.loads((summaries[0].parent / "selected.json").read_text())["rounds"]
    assert len(picked) == 1 and len(set(picked[0])) == 20


BROKEN = '''
    """A selector that returns duplicates: the runner must stop it with a clear message."""
    from vecaf_bench.api import hookimpl


    class Broken:
        uses = frozenset()

        def select(self, ctx, count):
            return [0] * count


    @hookimpl
    def vecaf_bench_add_selectors():
        return {"broken": Broken}
'''


def test_plugin_flag_broken_selector_exits_2_without_traceback(cache_dir, tmp_path):
    (tmp_path / "my_broken_selectors.py").write_text(textwrap.dedent(BROKEN))
    out = tmp_path / "runs"
    env = _env(cache_dir, tmp_path)
    listed = _run([*_cli(), "list", "selectors", "--plugin", "my_broken_selectors"], env, tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert any("broken" in line and "--plugin my_broken_selectors" in line for line in listed.stdout.splitlines())

    proc = _run(
        [*_cli(), "run", "--plugin", "my_broken_selectors", "--selector", "broken", *TINY, "--out", str(out)],
        env,
        tmp_path,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 2, text
    assert "Traceback" not in text, text
    assert "selector 'broken'" in proc.stderr, text
    assert "duplicates" in proc.stderr, text
    assert not list(out.glob("*/summary.json"))  # stopped before training
