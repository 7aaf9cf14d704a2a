"""OOD splits: what a shift plugin hands the runner, and how another dataset's classes are
matched to the run's.

A run names shifts with `--shift NAME[:ARGS]` (repeatable): `corruption:gaussian_noise:3`,
`domain:imagenet-r`. The shift plugin registered as NAME gets a `ShiftRequest` (ARGS, the run's
dataset, seed, input size, and a loader for other named datasets) and returns `OODSplit`s. Each
split is evaluated beside the test split; its labels are in the run's label space, and a
logit mask restricts the prediction to the classes the split can hold (ImageNet-R's 200 of
ImageNet's 1000). The split also names its target domain(s) and prompt templates: VeCAF's
text-domain augmentation reads them (config `text_domain: auto`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import DatasetSplits, ImageSource, RelabeledImages
from .errors import UserError


@dataclass
class OODSplit:
    name: str  # unique in the run, e.g. "corruption:gaussian_noise:3" or "imagenet-r"
    images: ImageSource  # labels in the run's label space
    mask: np.ndarray | None = None  # bool (num_classes,): classes this split can hold; None: all
    group: str | None = None  # splits averaged together in the summary (e.g. "corruption")
    domains: list[str] = field(default_factory=list)  # target domain names ("sketch", "painting", ...)
    templates: list[str] = field(default_factory=list)  # prompt templates with one {} for the class name
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class ShiftRequest:
    spec: str  # what follows the shift's name: "gaussian_noise:3" in "corruption:gaussian_noise:3"
    splits: DatasetSplits  # the run's dataset; corruptions are applied to its test split
    seed: int = 0
    image_size: int | None = None  # the run's input size (corruptions are made at this size)
    load_dataset: Callable[[str], DatasetSplits] | None = None  # another named dataset (domain shifts)
    cache_dir: str | None = None  # the run's cache root (corrupted images are stored there); None: the default
    console: Any = None  # a rich Console for progress and messages; None: one on stderr


def parse_shift(text: str) -> tuple[str, str]:
    """'corruption:gaussian_noise:3' -> ('corruption', 'gaussian_noise:3')."""
    name, _, spec = str(text).strip().partition(":")
    if not name:
        raise UserError(f"shift '{text}' has no name. Write NAME[:ARGS], e.g. corruption:gaussian_noise:3.")
    return name, spec


def align_classes(
    images: ImageSource, source_classes: Sequence[str], target_classes: Sequence[str], tag: str
) -> tuple[RelabeledImages, np.ndarray | None]:
    """`images` (labelled in `source_classes`) as a split of the run whose classes are
    `target_classes`: samples of classes the run lacks are left out, labels are remapped by class
    key, and the mask marks the run's classes the split holds (None when it holds them all)."""
    position = {c: i for i, c in enumerate(target_classes)}
    to_target = np.array([position.get(c, -1) for c in source_classes], dtype=np.int64)
    labels = np.asarray(images.labels, dtype=np.int64)
    mapped = to_target[labels] if len(labels) else labels
    keep = np.flatnonzero(mapped >= 0)
    if len(keep) == 0:
        raise UserError(
            f"OOD split '{tag}' shares no class with the run's dataset (its classes start "
            f"{', '.join(list(source_classes)[:3])}; the run's {', '.join(list(target_classes)[:3])}). "
            "Pick a shift whose classes overlap the dataset's (e.g. ImageNet with ImageNet-R)."
        )
    present = np.zeros(len(target_classes), dtype=bool)
    present[to_target[to_target >= 0]] = True
    relabeled = RelabeledImages(images, keep, mapped[keep], f"{images.fingerprint}/as:{tag}")
    return relabeled, (None if present.all() else present)
