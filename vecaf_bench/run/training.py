"""Stage 3: finetuning, one round's share of the batch budget at a time.

`FinetuneTrainer` is the `finetune` recipe (vecaf_bench_plugins.recipes.finetune): the whole
model trains on the round's images. The other recipes are plugins too; `vecaf_bench.run.recipes`
builds the one the config names.

One optimizer and one cosine schedule span the whole batch budget whatever the number of rounds,
so every selector trains under the same learning-rate curve. Under torchrun the DDP wrapper
trains (gradients averaged over the ranks); evaluation, features and selection use the bare
model, whose forward does not wait for the other ranks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..config import RunConfig
from ..data import ImageSource
from ..seeding import set_rng_state
from ..train import StepState, batch_plan, build_criterion, build_optimizer, train_steps
from ..transforms import Normalize
from .rank import Rank


class FinetuneTrainer:
    """The `finetune` recipe: every parameter trains, one optimizer step per row of the batch plan."""

    def __init__(self, cfg: RunConfig, model: torch.nn.Module, device: torch.device, rank: Rank) -> None:
        self.cfg = cfg
        self.model = model
        self.state = StepState(global_step=0)
        self.opt, self.sched = build_optimizer(model, cfg.train, cfg.batch_budget)
        self.trainee: torch.nn.Module = model
        if rank.active:
            self.trainee = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        self.criterion = build_criterion(cfg.train)

    @property
    def step(self) -> int:
        return self.state.global_step

    @property
    def train_images(self) -> int:
        """Image-passes through the backbone for training: every step passes a batch of batch_size."""
        return self.step * self.cfg.batch_size

    @property
    def head_rows(self) -> int:
        """Rows of cached features the head trained on alone: none."""
        return 0

    def restore(self, ckpt: dict[str, Any]) -> None:
        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.state.global_step = int(ckpt["global_step"])
        self.sched.step_update(num_updates=self.state.global_step)
        set_rng_state(ckpt["rng"])

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "global_step": self.step}

    def train_round(
        self,
        round_index: int,
        training_set: np.ndarray,
        steps: int,
        first_step: int,
        pool: ImageSource,
        transform: Any,
        normalize: Normalize,
        after_step: Callable[[int, float], None],
    ) -> None:
        """Trains this round's `steps` on `training_set`, from wherever a resume left off.

        The batch plan is drawn up front from (seed, round), so a resumed round continues the
        same stream; `first_step` is the round's first global step minus one."""
        cfg = self.cfg
        plan = batch_plan(training_set, steps, cfg.batch_size, cfg.seed, round_index)
        done = self.step - first_step
        train_steps(
            self.trainee,
            pool,
            plan[done:],
            transform,
            normalize,
            self.opt,
            self.sched,
            self.criterion,
            self.state,
            cfg.train.amp,
            cfg.train.num_workers,
            after_step,
            augment_seed=cfg.seed if cfg.train.augment else None,
        )


Trainer = FinetuneTrainer  # its name before recipes were plugins
