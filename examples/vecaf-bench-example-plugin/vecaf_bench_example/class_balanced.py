"""class_balanced: round-robin over classes, a seeded random pick within each class.

Each pick goes to the class that has the fewest samples so far (earlier rounds included);
ties are broken by a seeded order of the classes, and within a class the samples are taken in
a seeded random order. Classes that run out are skipped. It reads the pool labels, so it
declares `Capabilities(uses={"labels"})` and the leaderboard reports it as a label-using method
(`ctx.labels` raises `UndeclaredUse` for a selector that does not declare it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from vecaf_bench.api import Capabilities, SelectionContext, hookimpl


class ClassBalanced:
    capabilities = Capabilities(uses={"labels"})

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        rng = ctx.rng()
        classes, label_idx = np.unique(np.asarray(ctx.labels), return_inverse=True)
        taken = np.zeros(ctx.pool_size, dtype=bool)
        taken[np.asarray(ctx.selected, dtype=np.int64)] = True
        have = np.bincount(label_idx[taken], minlength=len(classes)).astype(np.int64)
        # per class: its not-yet-selected samples in a seeded random order
        queues = [rng.permutation(np.flatnonzero((label_idx == c) & ~taken)) for c in range(len(classes))]
        heads = np.zeros(len(classes), dtype=np.int64)
        left = np.array([len(q) for q in queues], dtype=np.int64)
        tie = rng.permutation(len(classes))  # which class wins a tie, seeded
        picks: list[int] = []
        while len(picks) < count and left.sum() > 0:
            open_ = left > 0
            lowest = have[open_].min()
            candidates = np.flatnonzero(open_ & (have == lowest))
            c = int(candidates[np.argmin(tie[candidates])])
            picks.append(int(queues[c][heads[c]]))
            heads[c] += 1
            left[c] -= 1
            have[c] += 1
        return np.asarray(picks, dtype=np.int64)


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"class_balanced": ClassBalanced}
