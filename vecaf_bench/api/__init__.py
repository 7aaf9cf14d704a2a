"""vecaf-bench's public plugin API (version `API_VERSION`): everything a plugin imports.

    from vecaf_bench.api import Capabilities, SelectionContext, hookimpl

    class Entropy:
        capabilities = Capabilities(uses={"model"}, cold_start="random")

        def select(self, ctx: SelectionContext, count: int):
            p = ctx.pool_outputs(what=("probs",)).probs
            ...

    @hookimpl
    def vecaf_bench_add_selectors():
        return {"entropy": Entropy}

The hooks a plugin implements are specified, parameter by parameter, in `vecaf_bench.hookspecs`;
the conformance kits for every plugin kind are in `vecaf_bench.testing`. Nothing else of
vecaf-bench is public: the engine (`vecaf_bench.run`, the suite, the leaderboard) may change
between releases, this module changes only with `API_VERSION` and the README's changelog.
"""

from __future__ import annotations

import importlib
from typing import Any

import pluggy

from ..data import (
    ArrayImages,
    ConcatImages,
    DatasetRequest,
    DatasetSplits,
    FileImages,
    ImageSource,
    RelabeledImages,
    array_fingerprint,
    stratified_split,
)
from ..errors import PluginError, UserError, did_you_mean, unknown
from ..shifts import OODSplit, ShiftRequest, align_classes
from .deprecations import VecafBenchDeprecationWarning
from .plugins import (
    Backbone,
    BackboneFactory,
    DatasetFactory,
    ShiftFactory,
    TextEncoder,
    TextEncoderFactory,
    Tracker,
    TrackerFactory,
)
from .recipe import Recipe, RecipeFactory, RecipeRequest
from .records import EvalPoint, RoundRecord, RunInfo, TextFeatures
from .selector import (
    OUTPUTS,
    USES,
    Capabilities,
    OutputsProvider,
    Picks,
    PoolOutputs,
    Selection,
    SelectionContext,
    Selector,
    SelectorFactory,
    UndeclaredUse,
    capabilities_of,
)

#: Helpers for plugin authors that live in the engine, loaded on first use (they import torch,
#: pydantic or the data store, which a selector author's `import vecaf_bench.api` should not pay for).
_LAZY = {
    "RunConfig": "vecaf_bench.config",
    "default_cache_dir": "vecaf_bench.config",
    "cache_key": "vecaf_bench.features",
    "make_progress": "vecaf_bench.progress",
    "domain_templates": "vecaf_bench.text",
    "DataSource": "vecaf_bench.datastore",
    "FileIndex": "vecaf_bench.datastore",
    "NamedDataset": "vecaf_bench.datastore",
    "IMAGE_SUFFIXES": "vecaf_bench.datastore",
    "SPLIT_SEED": "vecaf_bench.datastore",
    "index_folders": "vecaf_bench.datastore",
    "report_corrupt": "vecaf_bench.datastore",
    "split_index": "vecaf_bench.datastore",
    "subfolders": "vecaf_bench.datastore",
    # building blocks of finetuning recipes (they import torch and timm)
    "FinetuneTrainer": "vecaf_bench.run.training",
    "StepState": "vecaf_bench.train",
    "batch_plan": "vecaf_bench.train",
    "build_criterion": "vecaf_bench.train",
    "build_optimizer": "vecaf_bench.train",
    "train_steps": "vecaf_bench.train",
    "set_rng_state": "vecaf_bench.seeding",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'vecaf_bench.api' has no attribute '{name}'")


#: The plugin API's version: the major part changes when a plugin written for it would break.
API_VERSION = "1.0"
#: The pluggy project name: the entry-point group and the hook prefix.
PROJECT = "vecaf_bench"
#: Marks a plugin's hook implementations (`@hookimpl def vecaf_bench_add_selectors(): ...`).
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "API_VERSION",
    "OUTPUTS",
    "PROJECT",
    "USES",
    "ArrayImages",
    "Backbone",
    "BackboneFactory",
    "Capabilities",
    "ConcatImages",
    "DatasetFactory",
    "DatasetRequest",
    "DatasetSplits",
    "EvalPoint",
    "FileImages",
    "ImageSource",
    "OODSplit",
    "OutputsProvider",
    "Picks",
    "PluginError",
    "PoolOutputs",
    "Recipe",
    "RecipeFactory",
    "RecipeRequest",
    "RelabeledImages",
    "RoundRecord",
    "RunInfo",
    "Selection",
    "SelectionContext",
    "Selector",
    "SelectorFactory",
    "ShiftFactory",
    "ShiftRequest",
    "TextEncoder",
    "TextEncoderFactory",
    "TextFeatures",
    "Tracker",
    "TrackerFactory",
    "UndeclaredUse",
    "UserError",
    "VecafBenchDeprecationWarning",
    "align_classes",
    "array_fingerprint",
    "capabilities_of",
    "did_you_mean",
    "unknown",
    *_LAZY,
    "hookimpl",
    "stratified_split",
]
