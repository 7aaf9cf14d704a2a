"""Stage 1: the pool's pretrained features, read from the cache or extracted once and cached.

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
            console.print(f"features: reused cache {cache.path(key)} ({feats.shape[0]} x {feats.shape[1]})")
        return feats, info
    n_pool = len(pool)
    shard = rank.shard(n_pool)
    with make_progress(console) as progress:
        task = progress.add_task("features", total=n_pool if shard is None else len(shard), info=str(normalize.device))

        def embed(out_factory: Any) -> None:
            timing = extract(
                backbone.embed,
                model,
                pool,
                transform,
                normalize,
                out_factory,
                batch_size=batch_size,
                num_workers=num_workers,
                on_batch=lambda n: progress.advance(task, n),
                indices=shard,
            )
            info.update(timing, images=n_pool)

        meta = {"backbone": backbone.fingerprint, "dataset": pool.fingerprint, "n": n_pool}
        if shard is None:
            feats = cache.store(key, meta, embed)
        else:  # each rank embeds its shard; rank 0 puts the rows in pool order into the cache
            local: dict[str, np.ndarray] = {}
            embed(lambda dim: local.setdefault("rows", np.empty((len(shard), dim), dtype=np.float32)))
            rows = local["rows"]
            if rank.main:
                feats = cache.store(key, meta, lambda open_out: rank.gather_rows(rows, n_pool, open_out(rows.shape[1])))
            else:
                rank.gather_rows(rows, n_pool, None)
    info.update(cached=False, seconds=time.perf_counter() - t0)
    if feats is not None:
        console.print(f"features: extracted {feats.shape[0]} x {feats.shape[1]} in {info['seconds']:.1f} s, cached")
    return feats, info
