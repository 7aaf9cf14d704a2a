"""Compatibility: the runner moved to the `vecaf_bench.run` package (one module per stage)."""

from __future__ import annotations

from .run import RunInterrupted, Runner, load_dataset, parse_backbone
from .results import CHECKPOINT

__all__ = ["CHECKPOINT", "RunInterrupted", "Runner", "load_dataset", "parse_backbone"]
