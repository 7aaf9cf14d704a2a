"""wandb: the run's config, curve and summary in Weights & Biases.

Mode: `--wandb-mode`, else $WANDB_MODE, else `disabled` (a default run needs no account). In
`offline` mode the run files are written under the run folder (`<run>/wandb/`), to be pushed
later with `wandb sync`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vecaf_bench.api import RunConfig, UserError, hookimpl


def wandb_mode(config: RunConfig) -> str:
    return config.wandb_mode or os.environ.get("WANDB_MODE") or "disabled"


def run_tags(config: RunConfig) -> list[str]:
    return [
        f"selector:{config.selector}",
        f"dataset:{Path(config.dataset).name}",
        f"budget:{config.label_budget}",
        f"batches:{config.batch_budget}",
        f"seed:{config.seed}",
    ]


def wandb_run_id(run_id: str, run_dir: Path) -> str:
    """W&B ids are unique per project, and a suite names its run folders by the grid (the same
    names in every results folder): the folder's absolute path goes into the id, so two suites
    never write into one W&B run, while a resumed run (same folder) reattaches to its own."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{run_id[:55]}-{digest}"


#: summary.json's small sections the W&B summary holds too (nested: W&B shows best.step, ...), so
#: a leaderboard read back with --from-wandb has the best-on-validation step and the compute
SUMMARY_SECTIONS = ("best", "compute", "val")


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool)) or value is None


def summary_scalars(summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the W&B summary can hold as a value: scalars, `uses` (a list) as 'labels, model' so a
    leaderboard read back with --from-wandb still knows what each selector used, and the sections
    in SUMMARY_SECTIONS with their scalar values."""
    out = {k: v for k, v in summary.items() if _scalar(v)}
    if isinstance(summary.get("uses"), (list, tuple)):
        out["uses"] = ", ".join(summary["uses"])
    for key in SUMMARY_SECTIONS:
        section = summary.get(key)
        if isinstance(section, Mapping):
            out[key] = {k: v for k, v in section.items() if _scalar(v)}
    return out


def metric_name(key: str) -> str:
    """The W&B name of an evaluation metric: validation under val/, OOD as given, the rest test/."""
    if key.startswith("ood/"):
        return key
    if key.startswith("val_"):
        return f"val/{key[4:]}"
    return f"test/{key}"


class WandbTracker:
    def __init__(self, config: RunConfig, run_dir: Path) -> None:
        self.config = config
        self.run_dir = Path(run_dir)
        self.mode = wandb_mode(config)
        self.run: Any = None

    @hookimpl
    def vecaf_bench_run_start(self, run: Any) -> None:
        import wandb

        try:
            self.run = wandb.init(
                project=self.config.wandb_project,
                entity=self.config.wandb_entity,
                group=self.config.wandb_group,
                name=run.run_id,
                id=wandb_run_id(run.run_id, self.run_dir),
                resume="allow",
                tags=run_tags(self.config),
                config={**self.config.to_dict(), "label_budget_count": run.label_budget, "pool_size": run.pool_size},
                dir=str(self.run_dir),
                mode=self.mode,  # type: ignore[arg-type]
                job_type="run",
            )
        except Exception as e:
            raise UserError(
                f"W&B could not start in mode '{self.mode}' ({type(e).__name__}: {e}). "
                "Log in with `wandb login`, or run with --wandb-mode offline or disabled."
            ) from None
        self.run.define_metric("train/step")
        for prefix in ("test/*", "val/*", "train/*", "round/*", "ood/*"):
            self.run.define_metric(prefix, step_metric="train/step")

    @hookimpl
    def vecaf_bench_round_end(self, run: Any, record: Mapping[str, Any]) -> None:
        if self.run is not None:
            self.run.log({f"round/{k}": v for k, v in record.items()})

    @hookimpl
    def vecaf_bench_evaluate(self, run: Any, step: int, metrics: Mapping[str, float]) -> None:
        if self.run is not None:
            row = {
                "train/step": step,
                **{metric_name(k): v for k, v in metrics.items() if k != "step"},
            }
            if "train_loss" in metrics:
                row["train/loss"] = row.pop("test/train_loss")
            self.run.log(row)

    @hookimpl
    def vecaf_bench_run_end(self, run: Any, summary: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        import wandb

        self.run.summary.update(summary_scalars(summary))
        curve = summary.get("curve") or []
        if curve:
            cols: list[str | int] = ["step", "top1", "top5"]
            self.run.log({"curve": wandb.Table(columns=cols, data=[[p.get(c) for c in cols] for p in curve])})
        self.run.finish(exit_code=0 if summary.get("status") == "finished" else 1)
        self.run = None


@hookimpl
def vecaf_bench_add_trackers() -> Mapping[str, Any]:
    return {"wandb": WandbTracker}
