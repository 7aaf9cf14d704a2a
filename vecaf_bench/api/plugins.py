"""The contracts of the other plugin kinds: backbones, datasets, text encoders, shifts, trackers.

Each kind is registered by a hook in `vecaf_bench.hookspecs` that returns ``{name: factory}``;
the aliases below are what each factory is called with and must return. The conformance kits in
`vecaf_bench.testing` check a plugin against them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..data import DatasetRequest, DatasetSplits
from ..shifts import OODSplit, ShiftRequest

if TYPE_CHECKING:
    import torch
    from torch import nn


@runtime_checkable
class Backbone(Protocol):
    """A pretrained model family member: builds the model to finetune and says how to embed.

    name: the model's name. fingerprint: changes whenever the weights do (part of the
    feature-cache key). data_config: timm-style (input_size, interpolation, mean, std, crop_pct).
    """

    name: str
    fingerprint: str
    data_config: dict[str, Any]

    def create_model(self, num_classes: int, drop_path: float = 0.0) -> nn.Module:
        """A pretrained model with a fresh `num_classes` head, ready to finetune."""
        ...

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit embeddings (B, D) of a normalised batch: what selectors see."""
        ...

    def classifier(self, model: nn.Module) -> nn.Module:
        """The head: maps `embed`'s output to logits, so that one forward gives a selector both
        (`ctx.pool_outputs`). A backbone without it costs a second forward for the logits."""
        ...


@runtime_checkable
class TextEncoder(Protocol):
    """A sentence encoder for annotation embeddings (text-using selectors).

    name: shown to the user. fingerprint: changes with the weights (text-cache key). dim: output size.
    """

    name: str
    fingerprint: str
    dim: int

    def encode(self, texts: list[str], batch_size: int, device: torch.device | str) -> np.ndarray:
        """(len(texts), dim) float32, every row L2-normalised."""
        ...


@runtime_checkable
class Tracker(Protocol):
    """An observer of one run: any of the life-cycle hooks of `vecaf_bench.hookspecs`,
    decorated with `vecaf_bench.api.hookimpl`. Trackers never write the run's results: the
    engine does (summary.json, events.jsonl, selected.json), whatever trackers a run has."""


#: ``(model_name, weights=...) -> Backbone``; `weights` is the run's ``--weights`` value.
BackboneFactory = Callable[..., Backbone]
#: ``(DatasetRequest) -> DatasetSplits``.
DatasetFactory = Callable[[DatasetRequest], DatasetSplits]
#: ``(model=None, pretrained=None) -> TextEncoder``: `open_clip:ViT-B-32@openai` gives both.
TextEncoderFactory = Callable[..., TextEncoder]
#: ``(ShiftRequest) -> [OODSplit, ...]``.
ShiftFactory = Callable[[ShiftRequest], Sequence[OODSplit]]
#: ``(config, run_dir) -> Tracker``.
TrackerFactory = Callable[[Any, Path], Any]
