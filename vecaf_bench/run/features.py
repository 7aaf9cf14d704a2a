"""Stage 1: the pool's pretrained features, read from the cache or extracted once and cached.

In one process the extraction is resumable: an interrupted one continues at the last row flushed
(`FeatureCache.extract_resumable`), and two processes on the same pool take turns.

Under torchrun each rank embeds its shard and rank 0 gathers the rows in pool order into the
cache; rank 0 alone holds the features afterwards (the selection is its job).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from rich.console import Console

from ..config import default_cache_dir
from ..data import ImageSource
from ..features import FeatureCache, cache_key, extract
from ..progress import make_progress
from ..transforms import Normalize
from .rank import Rank


def pool_features(
    *,
    backbone: Any,
    model: torch.nn.Module,
    pool: ImageSource,
    transform: Any,
    normalize: Normalize,
    input_size: Any,
    batch_size: int,
    num_workers: int,
    cache_dir: str | None,
    rank: Rank,
    console: Console,
    what: str = "features",
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """(features on rank 0 / None elsewhere, what summary.json records about them)."""
    cache = FeatureCache(cache_dir or default_cache_dir())
    key = cache_key(
        backbone=backbone.fingerprint,
        dataset=pool.fingerprint,
        n=len(pool),
        transform=repr(transform),
        input_size=input_size,
        **({"layout": "channels_last"} if normalize.channels_last else {}),  # NCHW keeps its old caches
    )
    t0 = time.perf_counter()
    feats = cache.load(key) if rank.main else None
    info: dict[str, Any] = {"cache": str(cache.path(key))}
    if rank.broadcast(feats is not None):
        info.update(cached=True, seconds=time.perf_counter() - t0)
        if feats is not None:
            console.print(f"features: reused cache {cache.path(key)} ({feats.shape[0]} x {feats.shape[1]})",
                              highlight=False, soft_wrap=True)
        return feats, info
    n_pool = len(pool)
    shard = rank.shard(n_pool)
    meta = {"backbone": backbone.fingerprint, "dataset": pool.fingerprint, "n": n_pool}

    def embed(indices: np.ndarray | None, out_factory: Any, advance: Any) -> None:
        timing = extract(
            backbone.embed, model, pool, transform, normalize, out_factory,
            batch_size=batch_size, num_workers=num_workers, on_batch=advance, indices=indices,
        )
        info.update(timing, images=int(timing["images"]))

    if shard is None:  # one process: resumable, and one process at a time per cache entry
        with cache.locked(key):
            feats = cache.load(key)  # another process may have finished it while this one waited
            if feats is not None:
                info.update(cached=True, seconds=time.perf_counter() - t0)
                console.print(f"features: reused cache {cache.path(key)} ({feats.shape[0]} x {feats.shape[1]})",
                              highlight=False, soft_wrap=True)
                return feats, info
            start, _ = cache.partial_done(key, n_pool)
            if start:
                console.print(f"features: continuing an interrupted extraction at row {start:,} of {n_pool:,} "
                              f"({cache.partial_paths(key)[0]})", highlight=False, soft_wrap=True)
            with make_progress(console) as progress:
                task = progress.add_task(what, total=n_pool, completed=start, info=str(normalize.device))

                def run(indices: np.ndarray, out_factory: Any, on_rows: Any) -> None:
                    def advance(k: int) -> None:
                        on_rows(k)
                        progress.advance(task, k)

                    embed(indices, out_factory, advance)

                feats, start = cache.extract_resumable(key, meta, run)
            info["resumed_from"] = start
    else:  # each rank embeds its shard; rank 0 puts the rows in pool order into the cache
        with make_progress(console) as progress:
            task = progress.add_task(what, total=len(shard), info=str(normalize.device))
            local: dict[str, np.ndarray] = {}
            embed(shard, lambda dim: local.setdefault("rows", np.empty((len(shard), dim), dtype=np.float32)),
                  lambda k: progress.advance(task, k))
            rows = local["rows"]
            info["images"] = n_pool
            if rank.main:
                feats = cache.store(key, meta, lambda open_out: rank.gather_rows(rows, n_pool, open_out(rows.shape[1])))
            else:
                rank.gather_rows(rows, n_pool, None)
    info.update(cached=False, seconds=time.perf_counter() - t0)
    if feats is not None:
        again = f" (rows {info['resumed_from']:,} on; the rest were kept)" if info.get("resumed_from") else ""
        console.print(f"features: extracted {feats.shape[0]} x {feats.shape[1]}{again} in {info['seconds']:.1f} s, "
                      f"cached in {cache.path(key)}", highlight=False, soft_wrap=True)
    return feats, info
