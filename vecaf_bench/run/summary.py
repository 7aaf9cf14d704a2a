"""What summary.json holds: the run's identity, budgets, results and provenance."""

from __future__ import annotations

import time
from typing import Any

import torch

from .. import __version__
from ..api import API_VERSION, RunInfo
from ..config import RunConfig
from ..data import DatasetSplits
from ..environment import device_name, git_commit, package_versions


def build_summary(
    cfg: RunConfig,
    info: RunInfo,
    backbone: Any,
    splits: DatasetSplits,
    device: torch.device,
    records: list[dict[str, Any]],
    curve: list[dict[str, Any]],
    steps: int,
    feature_info: dict[str, Any],
    wall_start: float,
    world: int,
    versions: dict[str, str],
    capabilities: dict[str, Any],
) -> dict[str, Any]:
    last = curve[-1] if curve else {}
    return {
        "run_id": info.run_id,
        "status": "finished",
        "selector": cfg.selector,
        "recipe": cfg.recipe,
        "recipe_options": dict(cfg.recipe_options),
        "uses": info.uses,
        "capabilities": capabilities,
        "dataset": cfg.dataset,
        "backbone": cfg.backbone,
        "backbone_fingerprint": backbone.fingerprint,
        "seed": cfg.seed,
        "label_budget": info.label_budget,
        "label_budget_requested": cfg.label_budget,
        "batch_budget": cfg.batch_budget,
        "batch_size": cfg.batch_size,
        "rounds_requested": cfg.rounds,
        "steps": steps,
        "pool_size": info.pool_size,
        "test_size": info.test_size,
        "num_classes": info.num_classes,
        "image_size": (cfg.image_size or splits.default_image_size),
        "test_top1": last.get("top1"),
        "test_top5": last.get("top5"),
        "curve": curve,
        "rounds": records,
        "selection_seconds": float(sum(r["selection_seconds"] for r in records)),
        "selection_forward_batches": int(sum(r["selection_forward_batches"] for r in records)),
        "features": feature_info,
        "dataset_info": splits.info,
        "device": str(device),
        "device_name": device_name(device),
        "torch_threads": torch.get_num_threads(),  # CPU float reductions depend on it (docs/design.md)
        "world_size": world,  # processes (torchrun), each with this device kind
        "wall_seconds": time.perf_counter() - wall_start,
        "api_version": API_VERSION,
        "versions": {**package_versions(), **versions, "vecaf_bench": __version__},
        "git_commit": git_commit(),
    }
