"""The hooks every plugin (built-in or third-party) implements.

Two families, as in pytest: *registration* hooks return factories by name, and *life-cycle*
hooks observe a run. Trackers (local results, W&B) are life-cycle listeners; the runner
registers one instance per run and unregisters it at the end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

PROJECT = "vecaf_bench"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# -- registration: each returns {name: factory}; the factory builds the object from options --
@hookspec
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    """Selectors by name. A factory takes keyword options and returns a `Selector`."""


@hookspec
def vecaf_bench_add_backbones() -> Mapping[str, Any]:
    """Backbone families by prefix (`timm` in `timm:resnet50`). A factory returns a `Backbone`."""


@hookspec
def vecaf_bench_add_datasets() -> Mapping[str, Any]:
    """Datasets by name. A factory takes a `DatasetRequest` and returns `DatasetSplits`."""


@hookspec(firstresult=True)
def vecaf_bench_resolve_dataset(name: str) -> Any:
    """A factory for a dataset name no plugin registered (e.g. a folder path), or None."""


@hookspec
def vecaf_bench_add_text_encoders() -> Mapping[str, Any]:
    """Text encoders by name (`minilm`, `open_clip` in `open_clip:ViT-B-32@openai`). A factory
    takes its options (model, weights) and returns a `vecaf_bench.text.TextEncoder`."""


@hookspec
def vecaf_bench_add_shifts() -> Mapping[str, Any]:
    """OOD shift generators by name (`corruption` in `--shift corruption:gaussian_noise:3`). A
    factory takes a `vecaf_bench.shifts.ShiftRequest` and returns a list of `OODSplit`s: the
    images, their labels in the run's label space, the logit mask, and the target domain's
    names and prompt templates (which text-using selectors read)."""


@hookspec
def vecaf_bench_add_trackers() -> Mapping[str, Any]:
    """Trackers by name. A factory takes (config, run_dir) and returns an object that
    implements the life-cycle hooks below."""


# -- life cycle ------------------------------------------------------------------------------
@hookspec
def vecaf_bench_run_start(run: Any) -> None:
    """A run begins; `run` is the `RunInfo` (config, run_dir, run_id, pool/test sizes)."""


@hookspec
def vecaf_bench_round_end(run: Any, record: Mapping[str, Any]) -> None:
    """A selection round ended: `record` holds its picks, seconds and forward batches."""


@hookspec
def vecaf_bench_evaluate(run: Any, step: int, metrics: Mapping[str, float]) -> None:
    """An evaluation at optimizer step `step` (metrics: top1, top5 on the test split)."""


@hookspec
def vecaf_bench_run_end(run: Any, summary: Mapping[str, Any]) -> None:
    """The run ended (status 'finished' or 'interrupted'); `summary` is what summary.json holds."""
