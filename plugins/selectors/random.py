"""random: a uniform sample without replacement, seeded per run and round."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, hookimpl


class RandomSelector:
    capabilities = Capabilities()

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        remaining = np.setdiff1d(np.arange(ctx.pool_size), ctx.selected)
        return ctx.rng().choice(remaining, size=count, replace=False)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"random": RandomSelector}
