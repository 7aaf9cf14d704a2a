"""The recipe conformance kit: call it from your plugin's own tests.

    from vecaf_bench.testing import check_recipe
    from my_package.recipes import SoftProbe

    def test_soft_probe_conforms():
        check_recipe(SoftProbe, options={"lr": 0.5}, name="soft-probe")

`check_recipe` runs every check below on a tiny real run, driven the way the runner drives a
recipe: a small convolutional model that takes 8 x 8 RGB images (the selector kit's), a pool of
48 labelled images in 4 classes, the pool's pre-logit features computed with the model as made
(what `RecipeRequest.features` holds in a run), a batch budget of 8 steps of 4 images over two
rounds of 4 steps (6, then 12 labelled images). Each check is also public on its own; a failed
check raises `AssertionError` naming the recipe, the check and what went wrong. The whole kit
takes a second or two.

What is checked is what the runner relies on: the factory builds a `vecaf_bench.api.Recipe`
(`train_round`, `state_dict`, `restore`, `step`, `train_images`, `model`); `train_round` spends
exactly the steps it is given, calling ``after_step(global_step, loss)`` once per step with
consecutive global steps and finite float losses, and does nothing for steps a resume already
did; `train_images` (and `head_rows`, when present) are whole counts within steps x batch size;
the model's forward gives finite logits afterwards; two runs under one seed agree; and a run
stopped mid-round, checkpointed (through `torch.save`, the global generators' state included),
restored into a fresh model and continued, ends exactly where the uninterrupted run does (the
same losses, the same outputs).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..api import ArrayImages, RecipeRequest
from ..api.recipe import ENGINE_CHECKPOINT_KEYS
from ..config import RunConfig, TrainConfig
from ..registry import RECIPE_METHODS
from ..run.rank import Rank
from ..seeding import rng_state
from ..transforms import Normalize, eval_transform
from .selectors import _images, _TinyBackbone, _TinyNet, make_pool

__all__ = [
    "check_recipe",
    "check_recipe_builds",
    "check_recipe_deterministic",
    "check_recipe_resume",
    "check_recipe_steps",
    "make_recipe_world",
]

Factory = Callable[..., Any]

POOL = 48
CLASSES = 4
BATCH_BUDGET = 8
BATCH_SIZE = 4
ROUNDS = ((np.arange(6), 4, 0), (np.arange(12), 4, 4))  # (training set, steps, first step - 1) per round
STOP_AT = 6  # the resume check stops after this global step, mid round 1


class _Stop(Exception):
    pass


@dataclass
class RecipeWorld:
    """A tiny run's inputs: what the runner hands a recipe and what `train_round` receives."""

    request: RecipeRequest
    pool: ArrayImages
    transform: Any
    normalize: Normalize
    images: torch.Tensor  # the pool, normalised, for forward checks


def make_recipe_world(seed: int = 0, train: Mapping[str, Any] | None = None) -> RecipeWorld:
    """A fresh tiny run under `seed`: model made under ``torch.manual_seed(seed)``, its pool
    features, a `RunConfig` of 8 steps of 4 images (`train` overrides train.* keys)."""
    feats_in, labels = make_pool(POOL, 16, CLASSES, seed=0)
    rendered = _images(feats_in)
    pool = ArrayImages(rendered.pixels, labels, f"kit-recipe-{POOL}")
    backbone: Any = _TinyBackbone()  # embed and classifier: all a recipe reads of a backbone
    device = torch.device("cpu")
    transform = eval_transform(backbone.data_config)
    normalize = Normalize(backbone.data_config, device)
    images = normalize(torch.stack([torch.from_numpy(np.asarray(transform(pool.image(i)))) for i in range(POOL)]))
    torch.manual_seed(seed)
    model = _TinyNet(CLASSES)
    was = model.training
    model.eval()
    with torch.no_grad():
        features = backbone.embed(model, images).float().numpy()
    model.train(was)
    features.setflags(write=False)
    cfg = RunConfig(
        label_budget="12", batch_budget=BATCH_BUDGET, batch_size=BATCH_SIZE, rounds=2, eval_every=0, seed=seed,
        train=TrainConfig(**{"lr": 0.1, "warmup_steps": 1, **dict(train or {})}),
    )  # fmt: skip
    request = RecipeRequest(config=cfg, model=model, backbone=backbone, device=device, features=features, rank=Rank())
    return RecipeWorld(request, pool, transform, normalize, images)


def _fail(name: str, check: str, what: str) -> AssertionError:
    return AssertionError(f"recipe '{name}' failed check '{check}': {what}")


def _name(factory: Factory, name: str | None) -> str:
    return name or getattr(factory, "__name__", None) or type(factory).__name__


def _build(factory: Factory, world: RecipeWorld, options: Mapping[str, Any] | None, name: str, check: str) -> Any:
    try:
        recipe = factory(world.request, **dict(options or {}))
    except Exception as e:
        raise _fail(name, check, f"factory(request, **{dict(options or {})}) raised {type(e).__name__}: {e}") from e
    missing = [m for m in RECIPE_METHODS if not callable(getattr(recipe, m, None))]
    missing += [a for a in ("step", "train_images", "model") if not hasattr(recipe, a)]
    if missing:
        raise _fail(
            name, check,
            f"the factory returned a {type(recipe).__name__} without {', '.join(missing)}; a recipe "
            "(vecaf_bench.api.Recipe) has train_round, state_dict, restore, step, train_images and model",
        )  # fmt: skip
    return recipe


def _drive(recipe: Any, world: RecipeWorld, name: str, check: str, stop_at: int | None = None,
           rounds: Any = ROUNDS) -> list[tuple[int, float]]:
    """The rounds as the runner trains them; (global step, loss) per after_step call."""
    calls: list[tuple[int, float]] = []

    def after_step(step: int, loss: float) -> None:
        calls.append((step, loss))
        if stop_at is not None and step >= stop_at:
            raise _Stop

    for r, (training_set, steps, first) in enumerate(rounds):
        if recipe.step >= first + steps:
            continue  # a round finished before the resume point, as the runner skips it
        try:
            recipe.train_round(r, training_set, steps, first, world.pool, world.transform, world.normalize,
                               after_step)
        except _Stop:
            break
        except Exception as e:
            raise _fail(name, check, f"train_round(round {r}, {steps} steps) raised {type(e).__name__}: {e}") from e
    return calls


def _outputs(recipe: Any, world: RecipeWorld, name: str, check: str) -> torch.Tensor:
    model = recipe.model
    if not isinstance(model, nn.Module):
        raise _fail(name, check, f"`model` is a {type(model).__name__}, not the nn.Module the runner evaluates")
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(world.images)
    except Exception as e:
        raise _fail(name, check, f"the model's forward raised {type(e).__name__}: {e}") from e
    finally:
        model.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (POOL, CLASSES) or not torch.isfinite(out).all():
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise _fail(name, check, f"the model's forward must give finite ({POOL}, {CLASSES}) logits, got {got}")
    return out.detach().clone()


def _count(recipe: Any, attr: str, name: str, check: str) -> None:
    value = getattr(recipe, attr, 0)
    limit = recipe.step * BATCH_SIZE
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) <= limit:
        raise _fail(
            name, check,
            f"`{attr}` must be a whole count between 0 and steps x batch size ({limit}) after {recipe.step} steps, "
            f"got {value!r}",
        )  # fmt: skip


def check_recipe_builds(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """``factory(request, **options)`` builds a Recipe whose `step` and `train_images` start at 0."""
    name = _name(factory, name)
    recipe = _build(factory, make_recipe_world(), options, name, "builds")
    if recipe.step != 0:
        raise _fail(name, "builds", f"`step` of a fresh recipe must be 0, got {recipe.step!r}")
    _count(recipe, "train_images", name, "builds")


def check_recipe_steps(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Two rounds of 4 steps: after_step once per step, global steps 1..8 in order, finite float
    losses; `step` 8 at the end; a round whose steps are all done trains nothing; `train_images`
    and `head_rows` whole counts within steps x batch size; finite logits afterwards."""
    name = _name(factory, name)
    check = "steps"
    world = make_recipe_world()
    recipe = _build(factory, world, options, name, check)
    calls = _drive(recipe, world, name, check)
    steps = [s for s, _ in calls]
    if steps != list(range(1, BATCH_BUDGET + 1)):
        raise _fail(name, check, f"after_step must be called once per step with global steps 1..{BATCH_BUDGET} in "
                                 f"order (two rounds of 4), got {steps}")
    bad = [(s, v) for s, v in calls if isinstance(v, bool) or not isinstance(v, (float, int)) or not math.isfinite(v)]
    if bad:
        raise _fail(name, check, f"after_step's loss must be a finite float (0.0 for a step that fits nothing); got "
                                 f"{bad[0][1]!r} at step {bad[0][0]}")
    if recipe.step != BATCH_BUDGET:
        raise _fail(name, check, f"`step` must be {BATCH_BUDGET} after the two rounds, got {recipe.step!r}")
    training_set, n, first = ROUNDS[-1]
    again: list[int] = []
    recipe.train_round(len(ROUNDS) - 1, training_set, n, first, world.pool, world.transform, world.normalize,
                       lambda s, loss: again.append(s))
    if again or recipe.step != BATCH_BUDGET:
        raise _fail(name, check, f"train_round for a round whose {n} steps are all done (step - first_step == steps) "
                                 f"must train nothing; it called after_step for steps {again}")
    _count(recipe, "train_images", name, check)
    if hasattr(recipe, "head_rows"):
        _count(recipe, "head_rows", name, check)
    _outputs(recipe, world, name, check)


def check_recipe_deterministic(
    factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None
) -> None:
    """Two runs under one seed give the same losses and the same outputs."""
    name = _name(factory, name)
    check = "deterministic"
    runs = []
    for _ in range(2):
        world = make_recipe_world(seed=3)
        recipe = _build(factory, world, options, name, check)
        runs.append((_drive(recipe, world, name, check), _outputs(recipe, world, name, check)))
    (la, oa), (lb, ob) = runs
    if la != lb or not torch.equal(oa, ob):
        raise _fail(name, check, "two runs under the same seed differ (losses or outputs): draw randomness from the "
                                 "global generators the engine seeds, or from a generator seeded by the run seed")


def check_recipe_resume(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """A run stopped after step 6 (mid round 1), checkpointed as the runner does
    (``{**state_dict(), "rng": ...}`` through torch.save), restored into a fresh recipe on a
    fresh model (with the global generators moved on) and continued gives the uninterrupted run's
    losses for steps 7-8 and its outputs, exactly."""
    name = _name(factory, name)
    check = "resume"
    world = make_recipe_world(seed=1)
    straight = _build(factory, world, options, name, check)
    ref_calls = _drive(straight, world, name, check)
    ref_out = _outputs(straight, world, name, check)

    world = make_recipe_world(seed=1)
    first = _build(factory, world, options, name, check)
    _drive(first, world, name, check, stop_at=STOP_AT)
    if first.step != STOP_AT:
        raise _fail(name, check, f"after an after_step that raised at step {STOP_AT}, `step` is {first.step!r}: "
                                 "let after_step's exceptions through (the runner stops a run that way)")
    try:
        state = first.state_dict()
    except Exception as e:
        raise _fail(name, check, f"state_dict() raised {type(e).__name__}: {e}") from e
    if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
        raise _fail(name, check, "state_dict() must return a dict with 'global_step' (int): the checkpoint "
                                 "loader reads it")
    clash = sorted(set(state) & ENGINE_CHECKPOINT_KEYS)
    if clash:
        raise _fail(name, check, f"state_dict() uses the engine's checkpoint key(s) {clash}")
    buffer = io.BytesIO()
    try:
        torch.save({**state, "rng": rng_state()}, buffer)
    except Exception as e:
        raise _fail(name, check, f"torch.save could not write state_dict() ({type(e).__name__}: {e})") from e
    buffer.seek(0)
    ckpt = torch.load(buffer, map_location="cpu", weights_only=False)

    world = make_recipe_world(seed=1)
    resumed = _build(factory, world, options, name, check)
    torch.manual_seed(987_654)  # a resumed process's generators are not where the run stopped
    np.random.seed(987_654)
    try:
        resumed.restore(ckpt)
    except Exception as e:
        raise _fail(name, check, f"restore(checkpoint) raised {type(e).__name__}: {e}") from e
    if resumed.step != STOP_AT:
        raise _fail(name, check, f"`step` after restore must be the checkpoint's ({STOP_AT}), got {resumed.step!r}")
    calls = _drive(resumed, world, name, check)
    want = [c for c in ref_calls if c[0] > STOP_AT]
    if calls != want:
        raise _fail(name, check, f"the resumed run's (step, loss) after step {STOP_AT} are {calls}; the uninterrupted "
                                 f"run's are {want}")
    out = _outputs(resumed, world, name, check)
    if not torch.equal(out, ref_out):
        diff = float((out - ref_out).abs().max())
        raise _fail(name, check, f"the resumed run's outputs differ from the uninterrupted run's by up to {diff:.3g}")


def check_recipe(factory: Factory, *, options: Mapping[str, Any] | None = None, name: str | None = None) -> None:
    """Every recipe check on ``factory(request, **options)``."""
    check_recipe_builds(factory, options=options, name=name)
    check_recipe_steps(factory, options=options, name=name)
    check_recipe_deterministic(factory, options=options, name=name)
    check_recipe_resume(factory, options=options, name=name)
