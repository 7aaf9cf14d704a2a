"""vecaf-bench: run and compare active-finetuning selectors under matched budgets.

The public plugin API is `vecaf_bench.api`; its names are also importable from here
(`from vecaf_bench import Capabilities`), loaded on first use so that the command line starts
fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.2.0"


def __getattr__(name: str) -> Any:
    from . import api

    if name in api.__all__:
        return getattr(api, name)
    raise AttributeError(f"module 'vecaf_bench' has no attribute '{name}'")


def __dir__() -> list[str]:
    from . import api

    return sorted([*globals(), *api.__all__])
