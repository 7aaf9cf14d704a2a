"""Compatibility: the runner moved to the `vecaf_bench.run` package (one module per stage)."""

from __future__ import annotations

from .results import CHECKPOINT
from .run import RunInterrupted, Runner, load_dataset, parse_backbone

__all__ = ["CHECKPOINT", "RunInterrupted", "Runner", "load_dataset", "parse_backbone"]
