"""The hooks every plugin (built-in or third-party) implements, parameter by parameter.

Two families, as in pytest: *registration* hooks return ``{name: factory}`` (the factory types
are in `vecaf_bench.api`), and *life-cycle* hooks observe a run. Implement them with
`vecaf_bench.api.hookimpl`; a misspelled hook name is an error at load time (pluggy's
`check_pending`), never a plugin that silently does nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pluggy

from .api import (
    PROJECT,
    BackboneFactory,
    DatasetFactory,
    RecipeFactory,
    RoundRecord,
    RunInfo,
    SelectorFactory,
    ShiftFactory,
    TextEncoderFactory,
    TrackerFactory,
)
from .api.deprecations import warn_once

hookspec = pluggy.HookspecMarker(PROJECT)


def __getattr__(name: str) -> Any:
    if name == "hookimpl":  # API < 1.0: `from vecaf_bench.hookspecs import hookimpl`
        from .api import hookimpl

        warn_once(
            "hookspecs.hookimpl",
            "`from vecaf_bench.hookspecs import hookimpl` is deprecated since vecaf-bench API 1.0; "
            "write `from vecaf_bench.api import hookimpl`.",
        )
        return hookimpl
    raise AttributeError(f"module 'vecaf_bench.hookspecs' has no attribute '{name}'")


# -- registration: each returns {name: factory} -------------------------------------------------
@hookspec
def vecaf_bench_add_selectors() -> Mapping[str, SelectorFactory]:
    """Selectors by name.

    :return: ``{name: factory}``; ``factory(**options)`` returns a `vecaf_bench.api.Selector`
        (its options are the run config's ``selector_options``). The factory's class, or the
        object it returns, declares ``capabilities: vecaf_bench.api.Capabilities``.
    """


@hookspec
def vecaf_bench_add_backbones() -> Mapping[str, BackboneFactory]:
    """Backbone families by prefix (``timm`` in ``timm:resnet50``).

    :return: ``{prefix: factory}``; ``factory(model_name, weights=...)`` returns a
        `vecaf_bench.api.Backbone`.
    """


@hookspec
def vecaf_bench_add_datasets() -> Mapping[str, DatasetFactory]:
    """Datasets by name.

    :return: ``{name: factory}``; ``factory(request: DatasetRequest)`` returns `DatasetSplits`
        (pool and test split, class keys). A factory may carry a ``source`` attribute (a
        `vecaf_bench.datastore.DataSource`) that tells `vecaf-bench data` where its files live.
    """


@hookspec(firstresult=True)
def vecaf_bench_resolve_dataset(name: str) -> DatasetFactory | None:
    """A factory for a dataset name that no plugin registered (a folder path, say).

    :param name: the run's ``dataset`` value.
    :return: a `DatasetFactory`, or None to let the next plugin try.
    """


@hookspec
def vecaf_bench_add_recipes() -> Mapping[str, RecipeFactory]:
    """Finetuning recipes by name (``finetune``, ``linear-probe``, ``knn``, ``lp-ft``).

    :return: ``{name: factory}``; ``factory(request: RecipeRequest, **options)`` returns a
        `vecaf_bench.api.Recipe`, the trainer the runner drives for the whole run (``train_round``
        per round, ``state_dict``/``restore`` for checkpoints). ``request`` holds the run config,
        the model, the backbone, the device, the pool's cached pre-logit features and the torchrun
        rank; ``options`` are the run config's ``recipe_options``, checked against the factory's
        signature (after ``request``) before the run starts. A recipe spends exactly the batch
        budget's steps, whatever one of its steps does.
    """


@hookspec
def vecaf_bench_add_text_encoders() -> Mapping[str, TextEncoderFactory]:
    """Text encoders by name (``minilm``; ``open_clip`` in ``open_clip:ViT-B-32@openai``).

    :return: ``{name: factory}``; ``factory()`` or ``factory(model[, pretrained])`` returns a
        `vecaf_bench.api.TextEncoder`.
    """


@hookspec
def vecaf_bench_add_shifts() -> Mapping[str, ShiftFactory]:
    """OOD shift generators by name (``corruption`` in ``--shift corruption:gaussian_noise:3``).

    :return: ``{name: factory}``; ``factory(request: ShiftRequest)`` returns a list of
        `OODSplit` (images with labels in the run's label space, a logit mask, the target
        domain's names and prompt templates).
    """


@hookspec
def vecaf_bench_add_trackers() -> Mapping[str, TrackerFactory]:
    """Trackers by name (``wandb``).

    :return: ``{name: factory}``; ``factory(config, run_dir)`` returns an object with
        life-cycle hook implementations. Trackers observe; the engine writes the results.
    """


# -- life cycle: called on rank 0 only ------------------------------------------------------------
@hookspec
def vecaf_bench_run_start(run: RunInfo) -> None:
    """A run begins (or resumes: ``run.resumed``).

    :param run: the run's `RunInfo` (config, run_dir, run_id, split sizes, label budget, uses).
    """


@hookspec
def vecaf_bench_round_end(run: RunInfo, record: RoundRecord) -> None:
    """A selection round ended, before its training.

    :param run: the run's `RunInfo`.
    :param record: the round's `RoundRecord` (picks, seconds, forward batches, selector stats).
    """


@hookspec
def vecaf_bench_evaluate(run: RunInfo, step: int, metrics: Mapping[str, float]) -> None:
    """An evaluation after optimizer step `step`.

    :param run: the run's `RunInfo`.
    :param step: the global optimizer step (1-based).
    :param metrics: ``top1``, ``top5`` and ``loss`` on the test split, ``train_loss`` (the mean
        since the last evaluation), and ``ood/<split>/top1`` etc. for the run's OOD splits.
    """


@hookspec
def vecaf_bench_run_end(run: RunInfo, summary: Mapping[str, Any]) -> None:
    """The run ended; summary.json is already written.

    :param run: the run's `RunInfo`.
    :param summary: what summary.json holds; ``summary["status"]`` is "finished" or "interrupted".
    """
