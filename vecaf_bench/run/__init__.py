"""The engine of one run, in stages: setup, features, selection round, training, evaluation,
summary. Not part of the plugin API (`vecaf_bench.api` is).

The names below load on first use: `vecaf-bench select` imports `run.selection_round` alone and
answers a bad input before torch and timm are imported (the runner needs both)."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import RunInterrupted, Runner
    from .setup import load_dataset, parse_backbone

_WHERE = {"RunInterrupted": ".runner", "Runner": ".runner", "load_dataset": ".setup", "parse_backbone": ".setup"}
__all__ = ["RunInterrupted", "Runner", "load_dataset", "parse_backbone"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_WHERE[name], __name__), name)
