"""The engine of one run, in stages: setup, features, selection round, training, evaluation,
summary. Not part of the plugin API (`vecaf_bench.api` is)."""

from __future__ import annotations

from .runner import RunInterrupted, Runner
from .setup import load_dataset, parse_backbone

__all__ = ["RunInterrupted", "Runner", "load_dataset", "parse_backbone"]
