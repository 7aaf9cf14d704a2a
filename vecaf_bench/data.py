"""What a dataset plugin hands the runner: a pool split, a test split and class names.

The runner keeps the splits apart: selectors only ever receive the pool. The validation split
is the dataset's own when it has one, else carved from the pool by `with_validation`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from .errors import UserError


class ImageSource(Protocol):
    """Indexable images with integer labels and a fingerprint that changes with the content."""

    labels: np.ndarray
    fingerprint: str

    def __len__(self) -> int: ...

    def image(self, index: int) -> Image.Image: ...


@dataclass
class ArrayImages:
    """Images held in memory as uint8 arrays (N, H, W) or (N, H, W, 3)."""

    pixels: np.ndarray
    labels: np.ndarray
    fingerprint: str

    def __post_init__(self) -> None:
        if len(self.pixels) != len(self.labels):
            raise ValueError("pixels and labels differ in length")
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        return Image.fromarray(self.pixels[index]).convert("RGB")

    def subset(self, indices: np.ndarray, tag: str) -> ArrayImages:
        return ArrayImages(self.pixels[indices], self.labels[indices], f"{self.fingerprint}/{tag}")


@dataclass
class FileImages:
    """Images on disk, decoded lazily. A file that fails to decode names its path."""

    paths: Sequence[Path]
    labels: np.ndarray
    fingerprint: str

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray, tag: str) -> FileImages:
        indices = np.asarray(indices, dtype=np.int64)
        take = getattr(self.paths, "take", None)  # a datastore.PathTable subsets without copying paths
        paths = take(indices) if take is not None else [self.paths[int(i)] for i in indices]
        return FileImages(paths, self.labels[indices], f"{self.fingerprint}/{tag}")

    def image(self, index: int) -> Image.Image:
        path = self.paths[index]
        try:
            with Image.open(path) as im:
                return im.convert("RGB")
        except Exception as e:  # PIL raises many types for a damaged file
            raise UserError(
                f"image '{path}' could not be decoded ({type(e).__name__}: {e}). Remove or replace the file, "
                "or run with --on-corrupt skip to leave such files out."
            ) from None


@dataclass
class RelabeledImages:
    """A subset of another source with labels in another label space (an OOD split mapped
    onto the run's classes). `image(i)` is `base.image(indices[i])`."""

    base: ImageSource
    indices: np.ndarray
    labels: np.ndarray
    fingerprint: str

    def __post_init__(self) -> None:
        self.indices = np.asarray(self.indices, dtype=np.int64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if len(self.indices) != len(self.labels):
            raise ValueError("indices and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> Image.Image:
        return self.base.image(int(self.indices[index]))


class ConcatImages:
    """Several sources as one, in order (a dataset's pool and test split as one OOD set):
    `image(i)` is the image of the part that index `i` falls in."""

    def __init__(self, parts: Sequence[ImageSource], fingerprint: str) -> None:
        if not parts:
            raise ValueError("ConcatImages needs at least one part")
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])
        self.labels = np.concatenate([np.asarray(p.labels, dtype=np.int64) for p in self.parts])
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def image(self, index: int) -> Image.Image:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is outside the {len(self)} images")
        part = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.parts[part].image(int(index - self.offsets[part]))


@dataclass
class DatasetRequest:
    name: str
    seed: int = 0
    data_root: str | None = None
    test_fraction: float = 0.2
    on_corrupt: str = "skip"
    cache_dir: str | None = None  # where file indexes of big folders are cached (None: the feature cache)


@dataclass
class DatasetSplits:
    name: str
    pool: ImageSource
    test: ImageSource
    # class keys, in label order: WordNet ids for the ImageNet family (how OOD splits of other
    # datasets are matched to this one's classes), else the names
    classes: list[str]
    # create_transform overrides for training augmentation (e.g. no flips for digits)
    augment: dict[str, Any] = field(default_factory=dict)
    default_image_size: int | None = None
    info: dict[str, Any] = field(default_factory=dict)  # split sizes, skipped files, ...
    # human-readable class names for prompts ("goldfish" for n01443537); None: derived from `classes`
    class_names: list[str] | None = None
    # the visual domain(s) the images are in ("sketch" for ImageNet-Sketch; ImageNet-R's 16
    # renditions): a domain shift to this dataset hands them to text-domain augmentation
    domains: list[str] = field(default_factory=list)
    # a validation split of the dataset's own; None: the runner carves one from the pool (val_fraction)
    val: ImageSource | None = None
    # when the runner carved the validation split: (the dataset's own pool, the positions in it of
    # this pool's images), so that per-image inputs given by pool position (captions) still match
    carved_from: tuple[ImageSource, np.ndarray] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)


#: The validation split's seed: fixed, like the test split's, so that run seeds vary the selection
#: and the training, never the data a run is judged on, and paired seeds share one validation set.
VAL_SPLIT_SEED = 0


def take(source: ImageSource, indices: np.ndarray, tag: str) -> ImageSource:
    """The images of SOURCE at INDICES, in that order, as a source of their own."""
    indices = np.asarray(indices, dtype=np.int64)
    subset = getattr(source, "subset", None)
    if callable(subset):
        taken: ImageSource = subset(indices, tag)
        return taken
    labels = np.asarray(source.labels, dtype=np.int64)[indices]
    return RelabeledImages(source, indices, labels, f"{source.fingerprint}/{tag}")


def with_validation(
    splits: DatasetSplits, fraction: float, seed: int = VAL_SPLIT_SEED, reserved: np.ndarray | None = None
) -> DatasetSplits:
    """SPLITS with a validation split: the dataset's own, else FRACTION of the pool per class,
    held out of the pool (a selector never sees it). Every class keeps at least one pool image;
    a class with one image stays whole in the pool. FRACTION 0: no validation split.

    RESERVED (pool positions of a given selection): those stay in the pool and the validation split
    is carved from the other images, so that every image a person labelled is trained on."""
    if splits.val is not None:
        info = {**splits.info, "val": {"size": len(splits.val), "fraction": None, "seed": None, "source": "dataset"}}
        return replace(splits, info=info)
    if fraction <= 0:
        return replace(splits, info={**splits.info, "val": None})
    labels = np.asarray(splits.pool.labels, dtype=np.int64)
    tag = f"val{fraction}s{seed}"
    source = "carved from the pool"
    if reserved is None:
        keep, held = stratified_split(labels, fraction, seed)
    else:
        others = np.setdiff1d(np.arange(len(labels)), np.asarray(reserved, dtype=np.int64))
        if not len(others):
            raise UserError(f"the given selection holds every pool image ({len(labels)}), so no validation split can "
                            "be carved beside it; --set val_fraction=0 runs without one.")
        keep_o, held_o = stratified_split(labels[others], fraction, seed)
        keep, held = np.sort(np.concatenate([np.asarray(reserved, dtype=np.int64), others[keep_o]])), others[held_o]
        digest = hashlib.sha256(np.sort(np.asarray(reserved, dtype=np.int64)).tobytes()).hexdigest()[:12]
        tag += f"r{digest}"
        source = "carved from the pool outside the given selection"
    info = {
        **splits.info,
        "val": {"size": int(len(held)), "fraction": float(fraction), "seed": int(seed), "source": source},
    }
    return replace(
        splits,
        pool=take(splits.pool, keep, f"{tag}/pool"),
        val=take(splits.pool, held, f"{tag}/val"),
        carved_from=(splits.pool, keep),
        info=info,
    )


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic per-class split: the same labels, fraction and seed give the same split."""
    rng = np.random.default_rng(seed)
    pool, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        if len(idx) > 1:
            n_test = min(max(n_test, 1), len(idx) - 1)
        test.append(idx[:n_test])
        pool.append(idx[n_test:])
    return np.sort(np.concatenate(pool)), np.sort(np.concatenate(test))


def array_fingerprint(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]
