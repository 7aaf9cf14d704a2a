"""full: the whole pool (random batches): the reference curve for "batches to reach target"."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, hookimpl


class FullPool:
    # the label budget becomes the pool size; the order does not matter (batches are shuffled)
    capabilities = Capabilities(whole_pool=True, randomized=False)

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        remaining = np.setdiff1d(np.arange(ctx.pool_size), ctx.selected)
        return remaining[:count]


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"full": FullPool}
