"""full: the whole pool (random batches): the reference curve for "batches to reach target"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.hookspecs import hookimpl
from vecaf_bench.selection import SelectionContext


class FullPool:
    uses: frozenset[str] = frozenset()
    takes_whole_pool = True  # the runner sets the label budget to the pool size

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        remaining = np.setdiff1d(np.arange(ctx.pool_size), ctx.selected)
        return remaining[:count]


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"full": FullPool}
