"""The records the engine hands to life-cycle hooks and writes to the results folder.

Each is a dataclass that also reads as a mapping (`summary["test_top1"]`, `dict(record)`), so a
tracker written before API 1.0, which received plain dicts, keeps working.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class _Record(Mapping[str, Any]):
    """Mapping access to a dataclass's fields (None-valued optional fields included)."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    def __getitem__(self, key: str) -> Any:
        if key not in self._names():
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())

    def _names(self) -> list[str]:
        return [f.name for f in dataclasses.fields(self)]  # type: ignore[arg-type]


@dataclass
class RunInfo(_Record):
    """What life-cycle hooks receive about the run.

    config: the resolved run configuration (`vecaf_bench.config.RunConfig`).
    run_id, run_dir: the run's name and results folder.
    pool_size, test_size, num_classes: the dataset's split sizes and label space.
    val_size: the validation split's size (0: the run has none; see config `val_fraction`).
    label_budget: images the selector may pick (a count; the pool size for `full`).
    device: where the run trains ("cpu", "cuda:0").
    uses: the selector's declared reads (sorted).
    resumed: True when this run continues from a checkpoint.
    """

    config: Any
    run_id: str
    run_dir: Path
    pool_size: int = 0
    test_size: int = 0
    num_classes: int = 0
    label_budget: int = 0
    device: str = "cpu"
    uses: list[str] = field(default_factory=list)
    resumed: bool = False
    val_size: int = 0


@dataclass
class RoundRecord(_Record):
    """One selection round, as summary.json's ``rounds`` and the `round_end` hook hold it.

    round: 0-based. selector: who picked (the cold-start selector in round 0 if one was named).
    picked: new picks this round. selected_total: the training set's size after it.
    steps: optimizer steps this round trains. selection_seconds, selection_forward_batches:
    the selection's wall time and model forward batches; selection_forward_images: the pool images
    those batches held (the selection's compute, as images processed). stats: the selector's own
    statistics.
    """

    round: int
    picked: int
    selected_total: int
    steps: int
    selection_seconds: float
    selection_forward_batches: int
    selector: str = ""
    stats: dict[str, Any] = field(default_factory=dict)
    selection_forward_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if not d["stats"]:
            del d["stats"]
        return d


@dataclass
class EvalPoint(_Record):
    """One evaluation (summary.json's ``curve``): top1/top5/loss on the test split, val_* on the
    validation split (absent when the run has none). Targets and "best" read val_top1."""

    step: int
    top1: float
    top5: float
    loss: float
    train_loss: float | None = None
    val_top1: float | None = None
    val_top5: float | None = None
    val_loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        for k in ("train_loss", "val_top1", "val_top5", "val_loss"):
            if d[k] is None:
                del d[k]
        return d


@dataclass
class TextFeatures:
    """Annotation embeddings for text-using selectors (`ctx.text`).

    per_sample: (N, dim) float32, each pool sample's annotation embedding (its caption, else its
        class's prompt embedding: then the text channel carries the label, nothing more).
    per_class: (C, dim) float32, each class's prompt embedding.
    shared_space: True when the image features live in the encoder's (CLIP) space.
    encoder: the encoder's fingerprint. source: "captions" or "class prompts".
    cached, encoded, seconds: whether it came from the text cache, texts encoded, time spent.
    """

    per_sample: np.ndarray
    per_class: np.ndarray
    cached: bool = False
    shared_space: bool = False
    encoder: str = ""
    source: str = "class prompts"
    encoded: int = 0
    seconds: float = 0.0
