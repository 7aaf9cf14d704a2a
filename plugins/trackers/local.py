"""local: the run's curve as a CSV (`<run>/curve.csv`), for a spreadsheet or a plotting script.

Since API 1.0 the engine itself writes summary.json, events.jsonl and selected.json for every run,
whatever its trackers; this tracker only observes, as every tracker does. One row per
evaluation: step, top-1, top-5, test loss, mean training loss since the last evaluation.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vecaf_bench.api import RunInfo, hookimpl

COLUMNS = ("step", "top1", "top5", "loss", "train_loss")


class LocalCurve:
    def __init__(self, config: Any, run_dir: Path) -> None:
        self.path = Path(run_dir) / "curve.csv"

    @hookimpl
    def vecaf_bench_run_start(self, run: RunInfo) -> None:
        if not (run.resumed and self.path.is_file()):
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(COLUMNS)

    @hookimpl
    def vecaf_bench_evaluate(self, run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([metrics.get(c, "") for c in COLUMNS])


@hookimpl
def vecaf_bench_add_trackers() -> Mapping[str, Any]:
    return {"local": LocalCurve}
