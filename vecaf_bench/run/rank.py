"""torch.distributed behind one small object: every method is a no-op in one process.

The engine's stages ask the `Rank` whether they write (`main`), how to split work (`shard`)
and how to agree (`broadcast`, `any`); what torch.distributed does under torchrun is in
`vecaf_bench.distributed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from .. import distributed as dist


class Rank:
    @property
    def main(self) -> bool:
        """Rank 0: the one process that selects, writes, prints and logs."""
        return dist.is_main()

    @property
    def world(self) -> int:
        return dist.world()

    @property
    def active(self) -> bool:
        return dist.active()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's `obj` on every rank."""
        return dist.broadcast(obj)

    def any(self, flag: bool) -> bool:
        """True on every rank when true on one (all ranks stop after the same step)."""
        return dist.any_rank(flag)

    def shard(self, n: int) -> np.ndarray | None:
        """This rank's strided share of n items, or None (all of them) in one process."""
        return dist.shard(n)

    def gather_rows(self, rows: np.ndarray, n: int, out: np.ndarray | None) -> None:
        dist.gather_rows(rows, n, out)

    @contextmanager
    def main_first(self) -> Iterator[None]:
        with dist.main_first():
            yield

    def start(self, device: torch.device, batch_size: int) -> torch.device:
        """Joins the torchrun process group when there is one; the device this rank uses."""
        if not dist.requested():
            return device
        import os

        dist.check_batch_size(batch_size, int(os.environ["WORLD_SIZE"]))
        return dist.init(device)

    def stop(self) -> None:
        dist.shutdown()


class NoHooks:
    """What the life-cycle hooks are on ranks other than 0: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: None
