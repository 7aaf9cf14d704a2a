"""Before a run starts: its dataset, backbone name, run folder and the checks that need the model."""

from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from torch import nn

from ..config import RunConfig
from ..data import DatasetRequest, DatasetSplits
from ..errors import UserError
from ..pluginmanager import PluginHost


def parse_backbone(spec: str, default_family: str = "timm") -> tuple[str, str]:
    """'timm:resnet50' -> ('timm', 'resnet50'); a bare model name is in `default_family`."""
    prefix, sep, name = spec.partition(":")
    if not sep:
        return default_family, spec
    return prefix, name


def load_dataset(host: PluginHost, cfg: RunConfig) -> DatasetSplits:
    request = DatasetRequest(
        name=cfg.dataset,
        seed=cfg.seed,
        data_root=cfg.data_root,
        test_fraction=cfg.test_fraction,
        on_corrupt=cfg.on_corrupt,
        cache_dir=cfg.cache_dir,
    )
    if cfg.dataset in host.datasets():
        factory = host.datasets().get(cfg.dataset).factory
    else:
        factory = host.hook.vecaf_bench_resolve_dataset(name=cfg.dataset)
        if factory is None:
            host.datasets().get(
                cfg.dataset, hint="Or give the path of a folder in the ImageNet layout (one sub-folder per class)."
            )
    splits = factory(request)
    if len(splits.pool) == 0 or len(splits.test) == 0:
        raise UserError(f"dataset '{cfg.dataset}' has an empty pool or test split; it needs images in both.")
    return splits


def run_id(cfg: RunConfig) -> str:
    if cfg.run_name:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.run_name).strip("-")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    data = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.dataset).name or "data").strip("-")
    return f"{stamp}-{cfg.selector}-{data}-s{cfg.seed}"


def make_run_dir(cfg: RunConfig) -> Path:
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"results folder --out '{out}' is not writable ({e.strerror or e}). "
            "Choose a folder you can write to with --out."
        ) from None
    name = run_id(cfg)
    run_dir = out / name
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = out / f"{name}-{k}"
    run_dir.mkdir()
    return run_dir


def check_batch_norm(model: nn.Module, batch_size: int, world: int, backbone: str) -> None:
    """BatchNorm in training mode needs two images per process per step; with fewer, torch
    fails deep inside the first step ("Expected more than 1 value per channel")."""
    per_rank = batch_size // max(world, 1)
    if per_rank >= 2:
        return
    bn: Any = (nn.modules.batchnorm._BatchNorm,)
    if any(isinstance(m, bn) for m in model.modules()):
        where = f" per process ({batch_size} over {world} processes)" if world > 1 else ""
        raise UserError(
            f"batch size {batch_size}{where} is too small for {backbone}: its BatchNorm layers need at least 2 "
            "images per step to compute batch statistics. Use --batch-size 2 or more."
        )
