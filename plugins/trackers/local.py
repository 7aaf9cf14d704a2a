"""local: events.jsonl (one line per event, appended as it happens) and summary.json (atomic)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vecaf_bench.config import RunConfig
from vecaf_bench.api import hookimpl
from vecaf_bench.results import append_jsonl, write_json_atomic


class LocalResults:
    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.events = self.run_dir / "events.jsonl"

    def _event(self, kind: str, **data: Any) -> None:
        append_jsonl(self.events, {"event": kind, "time": time.time(), **data})

    @hookimpl
    def vecaf_bench_run_start(self, run: Any) -> None:
        self._event(
            "resume" if run.resumed else "start",
            run_id=run.run_id,
            pool_size=run.pool_size,
            test_size=run.test_size,
            label_budget=run.label_budget,
            device=run.device,
        )

    @hookimpl
    def vecaf_bench_round_end(self, run: Any, record: Mapping[str, Any]) -> None:
        self._event("round", **record)

    @hookimpl
    def vecaf_bench_evaluate(self, run: Any, step: int, metrics: Mapping[str, float]) -> None:
        self._event("eval", **metrics)

    @hookimpl
    def vecaf_bench_run_end(self, run: Any, summary: Mapping[str, Any]) -> None:
        self._event("end", status=summary["status"], steps=summary["steps"], test_top1=summary.get("test_top1"))
        write_json_atomic(self.run_dir / "summary.json", dict(summary))


@hookimpl
def vecaf_bench_add_trackers() -> Mapping[str, Any]:
    return {"local": LocalResults}
