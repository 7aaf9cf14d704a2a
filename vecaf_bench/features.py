"""Pool features: extracted once per (backbone, weights, dataset, transform), then memory-mapped.

ImageNet's 1.28M x 768 float32 features are 3.9 GB: the cache is written straight into a
memory-mapped .npy (never held whole in RAM) and renamed into place when complete, so an
interrupted extraction never leaves a file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
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
