"""Pool features: extracted once per (backbone, weights, dataset, transform), then memory-mapped.

ImageNet's 1.28M x 768 float32 features are 3.9 GB: the cache is written straight into a
memory-mapped .npy (never held whole in RAM) and renamed into place when complete, so an
interrupted extraction never leaves a file that a later run would trust.

An extraction is also resumable (`FeatureCache.extract_resumable`): rows go into
`<key>.partial.npy`, and `<key>.partial.json` records how many leading rows are whole, written
only after those rows are flushed to disk. A killed or interrupted extraction of a large folder
continues at that row next time; nothing before it is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import ImageSource
from .results import atomic_path, write_text_atomic
from .transforms import Normalize, eval_loader


def cache_key(**parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


class FeatureCache:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "features"

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def load(self, key: str) -> np.ndarray | None:
        p = self.path(key)
        if not p.is_file():
            return None
        try:
            return np.load(p, mmap_mode="r")
        except (ValueError, OSError):
            return None  # damaged: recompute

    def store(self, key: str, meta: dict[str, Any], fill: Callable[[Callable[[int], np.ndarray]], None]) -> np.ndarray:
        """`fill(open_out)` computes the features; `open_out(dim)` returns the memmap to write into."""
        self.root.mkdir(parents=True, exist_ok=True)
        n = int(meta["n"])
        holder: dict[str, np.memmap] = {}
        with atomic_path(self.path(key), suffix=".npy.tmp") as tmp:

            def open_out(dim: int) -> np.ndarray:
                holder["mm"] = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, dim))
                return holder["mm"]

            fill(open_out)
            mm = holder.pop("mm")
            mm.flush()
            del mm
        write_text_atomic(self.root / f"{key}.json", json.dumps(meta, indent=2, default=str))
        return np.load(self.path(key), mmap_mode="r")

    # -- resumable extraction ---------------------------------------------------------------------
    def partial_paths(self, key: str) -> tuple[Path, Path]:
        return self.root / f"{key}.partial.npy", self.root / f"{key}.partial.json"

    def partial_done(self, key: str, n: int) -> tuple[int, int]:
        """(rows already whole, their dimension) of an interrupted extraction; (0, 0) if none usable."""
        data, progress = self.partial_paths(key)
        try:
            rec = json.loads(progress.read_text())
            done, dim = int(rec["done"]), int(rec["dim"])
            mm = np.load(data, mmap_mode="r")
        except (OSError, ValueError, KeyError, TypeError):
            return 0, 0
        if int(rec.get("n", -1)) != n or mm.shape != (n, dim) or not 0 < done <= n:
            return 0, 0
        return done, dim

    @contextmanager
    def locked(self, key: str) -> Iterator[None]:
        """One process at a time extracts KEY (two runs of a suite on the same pool share the partial
        file); the second waits, then finds the finished entry."""
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; runs on one pool should not overlap there
            yield
            return
        with open(self.root / f"{key}.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def extract_resumable(
        self,
        key: str,
        meta: dict[str, Any],
        run: Callable[[np.ndarray, Callable[[int], np.ndarray], Callable[[int], None]], Any],
        flush_rows: int = 4096,
        flush_seconds: float = 30.0,
    ) -> tuple[np.ndarray, int]:
        """Fills the cache entry KEY, continuing an interrupted extraction; returns (features, the
        row it started at). `run(indices, out_factory, on_rows)` embeds the pool rows `indices`
        (in order) into `out_factory(dim)` and calls `on_rows(k)` after each k rows are written."""
        self.root.mkdir(parents=True, exist_ok=True)
        n = int(meta["n"])
        data, progress = self.partial_paths(key)
        start, _ = self.partial_done(key, n)
        holder: dict[str, Any] = {"done": start, "saved": start, "t": time.monotonic()}
        if start:
            holder["mm"] = np.load(data, mmap_mode="r+")

        def save() -> None:
            mm = holder.get("mm")
            if mm is None or holder["done"] == holder["saved"]:
                return
            mm.flush()  # the rows first, then the record that says they are whole
            write_text_atomic(progress, json.dumps({"done": holder["done"], "dim": mm.shape[1], "n": n}))
            holder["saved"], holder["t"] = holder["done"], time.monotonic()

        def out_factory(d: int) -> np.ndarray:
            if "mm" not in holder:
                holder["mm"] = np.lib.format.open_memmap(data, mode="w+", dtype=np.float32, shape=(n, d))
            elif holder["mm"].shape[1] != d:
                raise RuntimeError(f"feature dimension changed from {holder['mm'].shape[1]} to {d} mid-extraction")
            view: np.ndarray = holder["mm"][start:]
            return view

        def on_rows(k: int) -> None:
            holder["done"] += k
            if holder["done"] - holder["saved"] >= flush_rows or time.monotonic() - holder["t"] >= flush_seconds:
                save()

        if start < n:
            try:
                run(np.arange(start, n, dtype=np.int64), out_factory, on_rows)
            except BaseException:
                save()  # what is whole stays whole: the next call continues from there
                raise
        mm = holder.pop("mm")
        mm.flush()
        del mm
        os.replace(data, self.path(key))
        write_text_atomic(self.root / f"{key}.json", json.dumps(meta, indent=2, default=str))
        progress.unlink(missing_ok=True)
        return np.load(self.path(key), mmap_mode="r"), start


@torch.inference_mode()
def extract(
    embed: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    model: nn.Module,
    source: ImageSource,
    transform: Any,
    normalize: Normalize,
    out_factory: Callable[[int], np.ndarray],
    batch_size: int = 128,
    num_workers: int = 0,
    on_batch: Callable[[int], None] | None = None,
    indices: np.ndarray | None = None,
) -> dict[str, float]:
    """Embeds every image of `source` (or the listed ones, in order) into the array
    `out_factory(dim)` returns; returns timing."""
    device = normalize.device
    was_training = model.training
    model.eval()
    loader = eval_loader(source, transform, indices, batch_size, num_workers, device)
    out: np.ndarray | None = None
    pos = 0
    forward_s = 0.0
    start = time.perf_counter()
    use_amp = device.type == "cuda"
    for images, _ in loader:
        x = normalize(images)
        t0 = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            emb = embed(model, x)
        f = emb.float().cpu().numpy()
        forward_s += time.perf_counter() - t0
        if out is None:
            out = out_factory(f.shape[1])
        out[pos : pos + len(f)] = f
        pos += len(f)
        if on_batch:
            on_batch(len(f))
    model.train(was_training)
    total = time.perf_counter() - start
    return {"seconds": total, "forward_seconds": forward_s, "images": pos}
