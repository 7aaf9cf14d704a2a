"""vecaf-bench: run and compare active-finetuning selectors under matched budgets.

The public plugin API is `vecaf_bench.api`; its names are also importable from here
(`from vecaf_bench import Capabilities`), loaded on first use so that the command line starts
fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    api = importlib.import_module("vecaf_bench.api")  # not `from . import`: that calls this again
    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'vecaf_bench' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted([*globals(), *importlib.import_module("vecaf_bench.api").__all__])
