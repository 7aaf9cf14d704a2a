"""What a backbone plugin provides: a finetunable model and its pre-logit embedding."""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import nn


class Backbone(Protocol):
    name: str
    # changes whenever the weights do: part of the feature-cache key
    fingerprint: str
    # timm-style data config (input_size, interpolation, mean, std, crop_pct)
    data_config: dict[str, Any]

    def create_model(self, num_classes: int, drop_path: float = 0.0) -> nn.Module:
        """A pretrained model with a fresh `num_classes` head, ready to finetune."""
        ...

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logit features of a normalized batch (what selectors see)."""
        ...
