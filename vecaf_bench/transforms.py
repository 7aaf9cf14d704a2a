"""Image pipelines from timm's factories.

Transforms stop at uint8 (timm's `use_prefetcher=True` path) and the float conversion and
normalisation happen on the device, batched: on a GPU that keeps the loader workers light.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch  # at the top: TransformedImages subclasses torch's Dataset
from torch.utils.data import DataLoader, Dataset

from .data import ImageSource
from .seeding import loader_generator


def data_config_for(base: dict[str, Any], image_size: int | None) -> dict[str, Any]:
    cfg = dict(base)
    if image_size is not None:
        cfg["input_size"] = (3, image_size, image_size)
    return cfg


def eval_transform(data_config: dict[str, Any]) -> Any:
    from timm.data import create_transform  # timm costs seconds: imported when a pipeline is made

    return create_transform(
        input_size=data_config["input_size"],
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=data_config["mean"],
        std=data_config["std"],
        crop_pct=data_config.get("crop_pct"),
        crop_mode=data_config.get("crop_mode"),
        is_training=False,
        use_prefetcher=True,
    )


def train_transform(data_config: dict[str, Any], augment: bool, overrides: dict[str, Any]) -> Any:
    if not augment:
        return eval_transform(data_config)
    from timm.data import create_transform

    kwargs = dict(
        input_size=data_config["input_size"],
        interpolation=data_config.get("interpolation", "bilinear"),
        mean=data_config["mean"],
        std=data_config["std"],
        is_training=True,
        use_prefetcher=True,
    )
    kwargs.update(overrides)
    return create_transform(**kwargs)


class Normalize:
    """uint8 NCHW batch -> normalised float batch on the device (timm's prefetcher maths)."""

    def __init__(self, data_config: dict[str, Any], device: torch.device, channels_last: bool = False) -> None:
        self.channels_last = channels_last
        self.mean = torch.tensor([m * 255 for m in data_config["mean"]], device=device).view(1, -1, 1, 1)
        self.std = torch.tensor([s * 255 for s in data_config["std"]], device=device).view(1, -1, 1, 1)
        self.device = device

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = (batch.to(self.device, non_blocking=True).float() - self.mean) / self.std
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x


class TransformedImages(Dataset):
    def __init__(self, source: ImageSource, transform: Any, indices: np.ndarray | None = None) -> None:
        self.source = source
        self.transform = transform
        self.indices = indices

    def __len__(self) -> int:
        return len(self.source) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        j = int(i if self.indices is None else self.indices[i])
        arr = np.asarray(self.transform(self.source.image(j)))
        return torch.from_numpy(arr), int(self.source.labels[j])


def eval_loader(
    source: ImageSource,
    transform: Any,
    indices: np.ndarray | None,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> DataLoader:
    """Batches of (uint8 images, labels) in order, for every pass that does not train: features,
    evaluation and the model's outputs for selectors."""
    return DataLoader(
        TransformedImages(source, transform, indices),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=loader_generator(),
    )
