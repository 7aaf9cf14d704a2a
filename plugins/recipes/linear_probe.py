"""linear-probe: only the classifier head trains, on the pool's cached features; the backbone stays frozen.

What it trains: the backbone's head (`backbone.classifier(model)`, timm's `get_classifier()`: a
linear layer for every timm model), on the run's cached pool features: the pretrained backbone's
pre-logit embeddings (`backbone.embed`, timm's `forward_head(forward_features(x),
pre_logits=True)`) of each pool image under the eval transform, in eval mode, computed once per
(backbone, weights, dataset, transform) before any training. Since the backbone never changes,
these are exactly what the head sees at evaluation, where the whole model (frozen backbone +
trained head) runs on the test images as for any recipe. A step is one optimizer step on
`batch_size` feature rows: the same batch plan as `finetune` (`batch_plan`: the same labelled
images in the same order), timm's optimizer and schedule (`train.opt`, `train.sched`, one cosine
with warm-up over the batch budget) over the head's parameters, the same loss (`train.label_smoothing`).
Nothing else of the model is touched: its weights and BatchNorm statistics stay the pretrained ones.

Differences from finetuning a head on images: no augmentation (features come from the eval
transform, so `train.augment` does not apply), no dropout before the head (timm's `drop_rate`
acts in training only), no autocast (the head trains in float32 on the cached rows).

Cost: seconds. Per step one forward and backward of a (batch_size x D) @ (D x classes) matrix
product; the round's labelled rows are copied to the device once per round. `train_images` is 0
(no image passes through the backbone for training); `head_rows` counts the feature rows the
head trained on (steps x batch_size). Evaluation costs what it costs for every recipe.

Options: `lr` (the head's peak learning rate; default `train.lr`), `weight_decay` (default
`train.weight_decay`): `--set recipe_options.lr=0.5`.

Under torchrun it refuses to start: the cached features live on rank 0 only, and a probe of
seconds gains nothing from sharding. Run it in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import PluginError, RecipeRequest, UserError, hookimpl

if TYPE_CHECKING:
    from torch import nn


def refuse_torchrun(request: RecipeRequest, name: str, why: str) -> None:
    """A recipe that trains on the cached features cannot shard: under torchrun only rank 0 holds them."""
    if request.distributed:
        raise UserError(
            f"recipe '{name}' does not run under torchrun: {why}, and the pool's cached features live on rank 0 "
            "only. Run it in one process (vecaf-bench run ... without torchrun), or use --set recipe=finetune "
            "on several GPUs."
        )


def cached_features(request: RecipeRequest, name: str) -> np.ndarray:
    if request.features is None:
        raise PluginError(f"recipe '{name}' needs the pool's cached features, and the runner gave none.")
    return request.features


def head_of(request: RecipeRequest, name: str) -> nn.Module:
    """`backbone.classifier(model)`: the module that maps `backbone.embed`'s output to logits."""
    classifier = getattr(request.backbone, "classifier", None)
    if not callable(classifier):
        raise UserError(
            f"recipe '{name}' needs the backbone's head (a classifier(model) method on backbone "
            f"'{getattr(request.backbone, 'name', request.backbone)}'), which this backbone plugin does not have."
        )
    return classifier(request.model)


def positive(name: str, option: str, value: float | None, zero: bool = False) -> None:
    if value is not None and not (value >= 0 if zero else value > 0):
        raise UserError(
            f"recipe '{name}' option '{option}' must be {'>= 0' if zero else 'positive'}, got {value} "
            f"(--set recipe_options.{option}=...)."
        )


class HeadProbe:
    """Trains the head on cached feature rows, one optimizer step per row of a batch plan; the
    global step lives in `state`, shared with whoever else steps (lp-ft's finetuning)."""

    def __init__(
        self,
        request: RecipeRequest,
        name: str,
        total_steps: int,
        state: Any,
        lr: float | None = None,
        weight_decay: float | None = None,
    ) -> None:
        from vecaf_bench.api import build_criterion, build_optimizer

        cfg = request.config
        self.features = cached_features(request, name)
        self.head = head_of(request, name)
        self.device = request.device
        self.state = state
        changes = {k: v for k, v in (("lr", lr), ("weight_decay", weight_decay)) if v is not None}
        train = cfg.train.model_copy(update=changes)
        self.opt, self.sched = build_optimizer(self.head, train, total_steps)
        self.criterion = build_criterion(cfg.train)

    def run(self, plan: np.ndarray, labels: np.ndarray, after_step: Callable[[int, float], None]) -> None:
        """One step per row of `plan` (pool indices)."""
        import torch

        if len(plan) == 0:
            return
        if labels.shape[0] != self.features.shape[0]:
            raise PluginError(
                f"the cached features hold {self.features.shape[0]} rows for a pool of {labels.shape[0]} images."
            )
        rows = np.unique(plan)
        x_all = torch.from_numpy(np.ascontiguousarray(self.features[rows], dtype=np.float32)).to(self.device)
        y_all = torch.as_tensor(labels[rows], dtype=torch.long, device=self.device)
        where = torch.as_tensor(np.searchsorted(rows, plan), dtype=torch.long, device=self.device)
        was_training = self.head.training
        self.head.train()
        try:
            for batch in where:
                loss = self.criterion(self.head(x_all[batch]), y_all[batch])
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.state.global_step += 1
                self.sched.step_update(num_updates=self.state.global_step)
                after_step(self.state.global_step, float(loss.detach()))
        finally:
            self.head.train(was_training)


class LinearProbe:
    """The `linear-probe` recipe."""

    def __init__(self, request: RecipeRequest, lr: float | None = None, weight_decay: float | None = None) -> None:
        from vecaf_bench.api import StepState

        positive("linear-probe", "lr", lr)
        positive("linear-probe", "weight_decay", weight_decay, zero=True)
        refuse_torchrun(request, "linear-probe", "it trains the head on the cached features")
        self.cfg = request.config
        self.model = request.model
        self.state = StepState(global_step=0)
        self.probe = HeadProbe(request, "linear-probe", self.cfg.batch_budget, self.state, lr, weight_decay)

    @property
    def step(self) -> int:
        return self.state.global_step

    @property
    def train_images(self) -> int:
        """Image-passes through the backbone for training: none (the head trains on cached features)."""
        return 0

    @property
    def head_rows(self) -> int:
        """Cached feature rows the head trained on: batch_size per step."""
        return self.step * self.cfg.batch_size

    def feature_head(self) -> nn.Module:
        """The head: with the backbone frozen, head(cached pre-logits) is the model's forward, so the
        evaluator may evaluate on cached features instead of images."""
        return self.probe.head

    def train_round(
        self,
        round_index: int,
        training_set: np.ndarray,
        steps: int,
        first_step: int,
        pool: Any,
        transform: Any,
        normalize: Any,
        after_step: Callable[[int, float], None],
    ) -> None:
        from vecaf_bench.api import batch_plan

        cfg = self.cfg
        plan = batch_plan(training_set, steps, cfg.batch_size, cfg.seed, round_index)
        done = self.step - first_step
        self.probe.run(plan[done:], np.asarray(pool.labels), after_step)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.probe.opt.state_dict(), "global_step": self.step}

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        from vecaf_bench.api import set_rng_state

        self.model.load_state_dict(ckpt["model"])
        self.probe.opt.load_state_dict(ckpt["optimizer"])
        self.state.global_step = int(ckpt["global_step"])
        self.probe.sched.step_update(num_updates=self.state.global_step)
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])


@hookimpl
def vecaf_bench_add_recipes() -> Mapping[str, Any]:
    return {"linear-probe": LinearProbe}
