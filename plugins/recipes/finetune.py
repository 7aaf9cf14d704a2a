"""finetune: the whole model trains on the round's labelled images (vecaf-bench's recipe before recipes were plugins).

What it trains: every parameter of the pretrained backbone and of its fresh head, one optimizer
step per row of the batch plan (`batch_size` images drawn from the labelled set, reshuffled
passes, seeded by run seed and round), through the train transform (timm's augmentation unless
`train.augment: false`), with the optimizer, learning-rate schedule (one cosine with warm-up
over the whole batch budget, whatever the rounds), loss (label smoothing) and bf16 autocast on
CUDA that `train.*` configure. BatchNorm statistics update as the model trains.

Cost: per step one forward and backward pass of `batch_size` images through the whole model;
`train_images` (image-passes through the backbone for training) is steps x batch_size.

Options: none; it is configured by `train.*` (`train.lr`, `train.opt`, `train.sched`, ...).

Under torchrun it trains through DistributedDataParallel: each process takes its slice of every
global batch, gradients are averaged and BatchNorm is synchronised, so a step is the same global
batch on 1 or N processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vecaf_bench.api import Recipe, RecipeRequest, hookimpl


def finetune(request: RecipeRequest) -> Recipe:
    """The `finetune` recipe: vecaf-bench's engine trainer (`vecaf_bench.api.FinetuneTrainer`)."""
    from vecaf_bench.api import FinetuneTrainer  # imports torch and timm: only when a run builds it

    trainer: Recipe = FinetuneTrainer(request.config, request.model, request.device, request.rank)
    return trainer


@hookimpl
def vecaf_bench_add_recipes() -> Mapping[str, Any]:
    return {"finetune": finetune}
