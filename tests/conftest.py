from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vecaf_bench.cli import app

# a tiny, real run: sklearn digits, the shipped EfficientNet-Lite0 weights, 32 px, a few steps
TINY = ["--dataset", "digits", "--label-budget", "30", "--batch-budget", "6", "--batch-size", "16",
        "--eval-every", "3", "--image-size", "32"]


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist (`pytest -n N`) each worker, and the runs it starts, get their share of the
    cores: N workers with torch's default thread count each spin-wait on each other (measured here:
    22 min for 2 workers against 14.5 min for one process)."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch

        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("feature-cache")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, shared_cache: Path) -> None:
    monkeypatch.setenv("VECAF_BENCH_CACHE", str(shared_cache))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def cli():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


def run_dirs(out: Path) -> list[Path]:
    return sorted(p for p in Path(out).iterdir() if p.is_dir())


def summary_of(out: Path) -> dict:
    dirs = run_dirs(out)
    assert len(dirs) == 1, dirs
    return json.loads((dirs[0] / "summary.json").read_text())


def selected_of(run_dir: Path) -> list[list[int]]:
    return json.loads((run_dir / "selected.json").read_text())["rounds"]


os.environ.setdefault("WANDB_SILENT", "true")
