"""Finetuning and evaluation, built from timm's factories.

One cosine schedule (with linear warm-up) spans the whole batch budget T, whatever the number
of rounds, so every selector trains under the same optimizer and learning-rate curve.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.loss import LabelSmoothingCrossEntropy
from timm.optim import create_optimizer_v2
from timm.scheduler import create_scheduler_v2
from timm.utils import accuracy
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import distributed as dist
from .config import TrainConfig
from .data import ImageSource
from .seeding import loader_generator, sample_seeds, seeded
from .transforms import Normalize, TransformedImages, eval_loader


def build_optimizer(model: nn.Module, tc: TrainConfig, total_steps: int) -> tuple[Any, Any]:
    opt = create_optimizer_v2(model, opt=tc.opt, lr=tc.lr, weight_decay=tc.weight_decay, momentum=tc.momentum)
    sched, _ = create_scheduler_v2(
        opt,
        sched=tc.sched,
        num_epochs=total_steps,
        warmup_epochs=min(tc.warmup_steps, max(total_steps - 1, 0)),
        warmup_lr=tc.warmup_lr,
        min_lr=tc.min_lr,
        step_on_epochs=False,
        updates_per_epoch=1,
    )
    return opt, sched


def build_criterion(tc: TrainConfig) -> nn.Module:
    if tc.label_smoothing > 0:
        return LabelSmoothingCrossEntropy(smoothing=tc.label_smoothing)
    return nn.CrossEntropyLoss()


def batch_plan(selected: np.ndarray, steps: int, batch_size: int, seed: int, round_index: int) -> np.ndarray:
    """(steps, batch_size) pool indices: reshuffled passes over the selected set.

    Drawn up front from a seeded generator, so that a resumed run continues the same stream.
    """
    rng = np.random.default_rng([int(seed), 7919, int(round_index)])
    need = steps * batch_size
    chunks, have = [], 0
    while have < need:
        perm = rng.permutation(selected)
        chunks.append(perm)
        have += len(perm)
    return np.concatenate(chunks)[:need].reshape(steps, batch_size)


@dataclass
class StepState:
    global_step: int


class _SeededImages(Dataset):
    """Items are (pool index, seed): each image is augmented from its own seed (`seeded`)."""

    def __init__(self, images: TransformedImages) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        index, seed = key
        with seeded(seed):
            return self.images[index]


def train_steps(
    model: nn.Module,
    source: ImageSource,
    plan: np.ndarray,
    transform: Any,
    normalize: Normalize,
    opt: Any,
    sched: Any,
    criterion: nn.Module,
    state: StepState,
    amp: bool,
    num_workers: int,
    after_step: Callable[[int, float], None],
    augment_seed: int | None = None,
) -> None:
    """Runs one optimizer step per row of `plan`, the global batches still to train in this round;
    `after_step(global_step, loss)` may evaluate.

    Under torchrun `model` is the DistributedDataParallel wrapper and each rank loads its slice of
    every global batch (`distributed.batch_slice`); the loss passed on is the mean over the ranks,
    the global batch's loss. With `augment_seed`, the image in slot k of global step s is augmented
    from `sample_seeds(augment_seed, s, batch_size)[k]`, so the same images are seen on 1 or N
    processes; None (no random augmentation) loads them as they are."""
    device = normalize.device
    use_amp = amp and device.type == "cuda"
    plain = TransformedImages(source, transform)
    images: Dataset = plain
    rows: list[list[Any]] = [row.tolist() for row in dist.batch_slice(plan)]
    if augment_seed is not None:
        images = _SeededImages(plain)
        first = state.global_step + 1
        seeds = np.array([sample_seeds(augment_seed, first + i, plan.shape[1]) for i in range(len(plan))], np.int64)
        seeds = seeds.reshape(plan.shape)
        rows = [list(zip(row, s, strict=True)) for row, s in zip(rows, dist.batch_slice(seeds).tolist(), strict=True)]
    loader = DataLoader(
        images,
        batch_sampler=rows,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        generator=loader_generator(),
    )
    model.train()
    it: Iterator = iter(loader)
    for x_u8, labels in it:
        x = normalize(x_u8)
        y = labels.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state.global_step += 1
        sched.step_update(num_updates=state.global_step)
        after_step(state.global_step, dist.sum_values([float(loss.detach())])[0] / dist.world())


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    source: ImageSource,
    transform: Any,
    normalize: Normalize,
    batch_size: int,
    num_workers: int,
    logit_mask: torch.Tensor | None = None,
) -> dict[str, float]:
    """Top-1/top-5 (%) and mean loss over `source`; under torchrun each rank evaluates its shard
    and the counts are summed, so every rank returns the whole split's figures. Pass the bare
    model, not a DistributedDataParallel wrapper (whose forward would wait for the other ranks)."""
    device = normalize.device
    was_training = model.training
    model.eval()
    loader = eval_loader(source, transform, dist.shard(len(source)), batch_size, num_workers, device)
    n, correct1, correct5, loss_sum = 0, 0, 0, 0.0
    for images, labels in loader:
        x = normalize(images)
        y = labels.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x).float()
        if logit_mask is not None:
            logits = logits.masked_fill(~logit_mask, float("-inf"))
        a1, a5 = accuracy(logits, y, topk=(1, min(5, logits.shape[1])))
        b = len(y)
        correct1 += round(float(a1) * b / 100)  # counts, not percentages: sums that split over ranks exactly
        correct5 += round(float(a5) * b / 100)
        loss_sum += float(nn.functional.cross_entropy(logits, y, reduction="sum"))
        n += b
    model.train(was_training)
    total, c1, c5, loss_total = dist.sum_values([n, correct1, correct5, loss_sum])
    return {"top1": 100.0 * c1 / total, "top5": 100.0 * c5 / total, "loss": loss_total / total}
