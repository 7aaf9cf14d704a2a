"""Stage 3's builder: the run's trainer, made by the recipe plugin the config names.

`check_recipe_options` is what the CLI calls before the run imports torch (a misspelled option
answers in well under a second, with its closest match); `make_trainer` builds the recipe for the
runner with its options checked the same way and checks that what the factory returned is a
`vecaf_bench.api.Recipe`.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..api.recipe import Recipe, RecipeRequest
from ..errors import PluginError, UserError
from ..pluginmanager import PluginHost
from ..registry import RECIPE_METHODS
from .selection_round import _typed_options

FLAG = "--set recipe_options."
#: What the runner calls the trainer a recipe builds (any `vecaf_bench.api.Recipe`).
Trainer = Recipe


def check_recipe_options(host: PluginHost, name: str, options: Mapping[str, Any] | None, flag: str = FLAG) -> None:
    """The recipe name and its options' names and types checked against the factory's signature
    (after its `request` parameter) without building it."""
    entry = host.recipes().get(name, hint="It is recipe's value (--set recipe=...).")
    _typed_options(name, entry.factory, dict(options or {}), flag, kind="recipe", skip_first=True)


def make_trainer(
    host: PluginHost,
    cfg: Any,
    model: Any,
    backbone: Any,
    device: Any,
    rank: Any,
    features: np.ndarray | None,
) -> Recipe:
    """The run's trainer: ``factory(RecipeRequest(...), **cfg.recipe_options)`` of recipe `cfg.recipe`."""
    name = cfg.recipe
    entry = host.recipes().get(name, hint="It is recipe's value (--set recipe=...).")
    options = _typed_options(name, entry.factory, dict(cfg.recipe_options or {}), FLAG, kind="recipe", skip_first=True)
    request = RecipeRequest(config=cfg, model=model, backbone=backbone, device=device, features=features, rank=rank)
    try:
        trainer = entry.factory(request, **options)
    except (UserError, PluginError):
        raise
    except TypeError as e:
        raise UserError(
            f"recipe '{name}' could not be built with options {options} ({e}). Check each option's name and value "
            f"({FLAG}<name>=VALUE) against the recipe's card (vecaf-bench list recipes --details {name})."
        ) from None
    except Exception as e:
        frames = traceback.extract_tb(e.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise PluginError(
            f"recipe '{name}' ({entry.origin}) failed to build: {type(e).__name__}: {e}{where}. This is a bug in the "
            "recipe plugin; its conformance kit (vecaf_bench.testing.check_recipe) may show it faster."
        ) from e
    missing = [m for m in (*RECIPE_METHODS, "step", "train_images", "model") if not hasattr(trainer, m)]
    if missing:
        raise PluginError(
            f"recipe '{name}' ({entry.origin}) returned a {type(trainer).__name__} without {', '.join(missing)}; a "
            "recipe is a vecaf_bench.api.Recipe (train_round, state_dict, restore, step, train_images, model)."
        )
    return trainer
