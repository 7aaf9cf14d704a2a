"""The contract of a finetuning recipe: what trains the model on a round's picks, under the batch budget.

A recipe plugin registers ``{name: factory}`` with `vecaf_bench_add_recipes`; the run config's
``recipe`` names it and ``recipe_options`` are the factory's keyword arguments (checked against its
signature before the run imports torch, as selector options are). The runner builds one recipe
per run, ``factory(request, **options)``, and drives it round by round:

    recipe = factory(RecipeRequest(config, model, backbone, device, features, rank), **options)
    recipe.restore(checkpoint)                    # only when the run resumes
    for each round r: recipe.train_round(r, training_set, steps, first_step, pool, transform,
                                         normalize, after_step)
    checkpoint = {**recipe.state_dict(), ...the engine's keys}

Whatever a recipe does in a step (a finetuning step on images, a step of the head on cached
features, nothing at all), it counts steps as the batch budget does: `train_round` advances
`step` by exactly `steps` (less what a resume already did) and calls ``after_step(step, loss)``
once per step, which is where the runner evaluates, checkpoints and stops on a signal. The
runner evaluates ``recipe.model``'s forward on the test images, so what a recipe trains must be
what that forward computes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ..data import ImageSource
    from .plugins import Backbone


@dataclass(frozen=True)
class RecipeRequest:
    """What a recipe is built from, once per run.

    config: the run's `RunConfig` (``batch_budget``, ``batch_size``, ``seed``, ``train.*``: the
        optimizer, schedule, loss and augmentation every recipe shares).
    model: the backbone's model with its fresh ``num_classes`` head, on `device` (in train mode, as
        made); the runner evaluates this very object.
    backbone: the run's `Backbone` (``embed(model, x)``: pre-logits; ``classifier(model)``: the head).
    device: where the run trains.
    features: (pool size, D) float32, read-only: the pool's pretrained pre-logit embeddings,
        ``backbone.embed`` of the model as made (before any training) under the eval transform
        (resize + centre crop, no augmentation), in eval mode, bf16 autocast on CUDA. Row i is pool
        image i. None on ranks other than 0 under torchrun (rank 0 alone holds them).
    rank: the engine's view of torchrun: ``rank.active`` (a process group with several processes),
        ``rank.main``, ``rank.world``, ``rank.broadcast(obj)``, ``rank.any(flag)``; in one process
        every method is a no-op.
    """

    config: Any
    model: nn.Module
    backbone: Backbone
    device: torch.device
    features: np.ndarray | None
    rank: Any

    @property
    def distributed(self) -> bool:
        """True under torchrun with more than one process."""
        return bool(getattr(self.rank, "active", False))


@runtime_checkable
class Recipe(Protocol):
    """A finetuning recipe for one run: the trainer the runner drives.

    model: the model the runner evaluates (`RecipeRequest.model`, or a module whose forward
        replaces it). step: global steps done (0 at the start; after `restore`, the checkpoint's).
    train_images: images passed through the backbone for training so far (a finetuning step of
        batch size b passes b; a step on cached features passes none). head_rows (optional): rows
        of cached features the head trained on. Both go into summary["compute"].
    feature_head() (optional): the head module while the backbone is still the pretrained one
        (head(cached pre-logit features) is then the model's forward), else None; the evaluator may
        then evaluate on cached features instead of images. Leave it out when unsure.
    """

    model: nn.Module

    @property
    def step(self) -> int: ...

    @property
    def train_images(self) -> int: ...

    def train_round(
        self,
        round_index: int,
        training_set: np.ndarray,
        steps: int,
        first_step: int,
        pool: ImageSource,
        transform: Any,
        normalize: Any,
        after_step: Callable[[int, float], None],
    ) -> None:
        """Trains round `round_index`'s `steps` global steps on `training_set` (pool indices: the
        round's labelled set), from wherever a resume left off: `first_step` is the round's first
        global step minus one, so ``step - first_step`` steps of this round are already done.
        Calls ``after_step(global_step, loss)`` after each step, `loss` a finite float (the
        global batch's training loss; 0.0 for a step that fits nothing). `pool` holds the images
        and labels (``pool.labels``), `transform` is the train transform and `normalize` the
        on-device normalisation (`normalize.device` is the device). The batch plan of a step-based
        recipe is ``vecaf_bench.api.batch_plan(training_set, steps, batch_size, seed, round_index)``,
        the one every recipe and selector shares."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything `restore` needs (tensors and plain values), merged into the checkpoint:
        ``global_step`` (int, the checkpoint loader reads it) and the recipe's own keys, which must
        not be the engine's: selected, records, curve, ood_curves, losses, rng, identity, device,
        devices."""
        ...

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        """Continues from a checkpoint: `ckpt` holds this recipe's `state_dict` keys and the
        engine's; ``set_rng_state(ckpt["rng"])`` (vecaf_bench.api) puts the global generators back
        where they were, which a recipe whose steps draw random numbers must do."""
        ...


#: ``(request: RecipeRequest, **options) -> Recipe``; `options` are the run's ``recipe_options``.
RecipeFactory = Callable[..., Recipe]

#: The checkpoint keys the engine writes beside a recipe's `state_dict`.
ENGINE_CHECKPOINT_KEYS = frozenset(
    {"selected", "records", "curve", "ood_curves", "losses", "rng", "identity", "device", "devices"}
)
