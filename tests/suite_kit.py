"""What the suite tests share: a tiny suite file, the suite/leaderboard commands as an app."""

from __future__ import annotations

from pathlib import Path

import typer
import yaml
from typer.testing import CliRunner

from vecaf_bench.cli import friendly
from vecaf_bench.cli_suite import leaderboard, suite

TINY_BASE = {"batch_size": 8, "eval_every": 2, "image_size": 32, "train": {"warmup_steps": 1}}


def whole_pool(name: str) -> bool:
    return name == "full"


def write_suite(tmp_path: Path, name: str = "tiny", **over) -> Path:
    """A two-selector, two-seed suite on digits with 10 labels and 4 batches; `over` replaces keys."""
    data = {"name": name, "base": TINY_BASE, "selectors": ["random", "coreset"], "datasets": ["digits"],
            "label_budgets": [10], "batch_budgets": [4], "seeds": [0, 1], **over}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def suite_app() -> typer.Typer:
    a = typer.Typer(pretty_exceptions_enable=False)
    a.command()(friendly(suite))
    a.command()(friendly(leaderboard))
    return a


def invoke(app: typer.Typer, *args):
    # a wide terminal: paths in the messages stay on one line
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False, env={"COLUMNS": "400"})
