"""lp-ft: a linear probe for the first part of the batch budget, then finetuning of the whole model.

LP-FT as in Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022.

What it trains: for the first P = floor(probe_fraction x batch_budget) global steps, only the
head, on the cached pool features, exactly as `linear-probe` does (backbone frozen, no
augmentation, its own timm optimizer and schedule over those P steps); for the remaining
batch_budget - P steps, every parameter, exactly as `finetune` does (train transform with
augmentation, a fresh timm optimizer over the whole model and a fresh schedule, with warm-up,
over those steps, bf16 autocast on CUDA), starting from the probed head. Both phases read the
same batch plan as every recipe (`batch_plan`), and a probe step counts as a step: the run spends
exactly `batch_budget` steps. With several rounds the phases follow the global step, whatever
round it falls in.

Why: finetuning from a random head distorts the pretrained features before the head has
learnt anything; probing first keeps them (at <= 2% labels LP-FT adds 10-24 points over full
finetuning in BiLAF's and ActiveDC's reruns of ActiveFT's protocol).

Cost: P steps of `linear-probe` (seconds) plus batch_budget - P steps of `finetune`;
`train_images` = (steps past P) x batch_size, `head_rows` = (probe steps done) x batch_size.

Options: `probe_fraction` (share of the batch budget that probes, in [0, 1], default 0.5; 0 is
`finetune` with one more optimizer, 1 is `linear-probe`), `probe_lr` (the head's peak learning
rate while probing; default `train.lr`). The finetuning phase takes `train.*`.

Under torchrun it refuses to start: its probe trains on the cached features, which live on rank
0 only. Run it in one process.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import RecipeRequest, UserError, hookimpl
from vecaf_bench_plugins.recipes.linear_probe import HeadProbe, positive, refuse_torchrun

if TYPE_CHECKING:
    from torch import nn


class _Shifted:
    """A timm scheduler stepped by global step, read as steps since `offset` (the finetuning phase's own count)."""

    def __init__(self, sched: Any, offset: int) -> None:
        self.sched, self.offset = sched, offset

    def step_update(self, num_updates: int, metric: Any = None) -> None:
        self.sched.step_update(num_updates=max(int(num_updates) - self.offset, 0))


class LPFT:
    """The `lp-ft` recipe."""

    def __init__(self, request: RecipeRequest, probe_fraction: float = 0.5, probe_lr: float | None = None) -> None:
        from vecaf_bench.api import StepState, build_criterion, build_optimizer

        if not 0.0 <= probe_fraction <= 1.0:
            raise UserError(
                f"recipe 'lp-ft' option 'probe_fraction' must be in [0, 1] (the share of the batch budget that "
                f"probes), got {probe_fraction} (--set recipe_options.probe_fraction=...)."
            )
        positive("lp-ft", "probe_lr", probe_lr)
        refuse_torchrun(request, "lp-ft", "its probe trains the head on the cached features")
        cfg = request.config
        self.cfg, self.model = cfg, request.model
        total = int(cfg.batch_budget)
        self.probe_steps = min(math.floor(probe_fraction * total + 1e-9), total)
        self.state = StepState(global_step=0)
        self.probe = HeadProbe(request, "lp-ft", max(self.probe_steps, 1), self.state, probe_lr)
        ft_steps = total - self.probe_steps
        self.opt, sched = build_optimizer(self.model, cfg.train, max(ft_steps, 1))
        self.sched = _Shifted(sched, self.probe_steps)
        self.criterion = build_criterion(cfg.train)

    @property
    def step(self) -> int:
        return self.state.global_step

    @property
    def train_images(self) -> int:
        """Image-passes through the backbone for training: batch_size per finetuning step."""
        return max(self.step - self.probe_steps, 0) * self.cfg.batch_size

    @property
    def head_rows(self) -> int:
        """Cached feature rows the head trained on while probing."""
        return min(self.step, self.probe_steps) * self.cfg.batch_size

    def feature_head(self) -> nn.Module | None:
        """The head while the backbone is still the pretrained one (probe phase), else None: the
        evaluator may evaluate on cached features only while they are the model's."""
        return self.probe.head if self.step <= self.probe_steps else None

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
        from vecaf_bench.api import batch_plan, train_steps

        cfg = self.cfg
        plan = batch_plan(training_set, steps, cfg.batch_size, cfg.seed, round_index)
        rest = plan[self.step - first_step :]
        probing = min(max(self.probe_steps - self.step, 0), len(rest))
        self.probe.run(rest[:probing], np.asarray(pool.labels), after_step)
        if len(rest) > probing:
            train_steps(
                self.model,
                pool,
                rest[probing:],
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

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "probe_optimizer": self.probe.opt.state_dict(),
            "global_step": self.step,
        }

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        from vecaf_bench.api import set_rng_state

        self.model.load_state_dict(ckpt["model"])
        self.opt.load_state_dict(ckpt["optimizer"])
        self.probe.opt.load_state_dict(ckpt["probe_optimizer"])
        self.state.global_step = int(ckpt["global_step"])
        self.probe.sched.step_update(num_updates=min(self.step, self.probe_steps))
        self.sched.step_update(num_updates=self.step)
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])


@hookimpl
def vecaf_bench_add_recipes() -> Mapping[str, Any]:
    return {"lp-ft": LPFT}
