"""One selection round: the context built in one place, the selector run and its picks checked.

`build_context` is the only constructor of a `SelectionContext` in vecaf-bench: the runner, the
`select` command and the conformance kit all call it, so a selector sees the same thing under
test as in a real run. It hands over only what the selector's `Capabilities` declare.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..api.deprecations import warn_once
from ..api.selector import Capabilities, OutputsProvider, Selection, SelectionContext, capabilities_of
from ..errors import PluginError, UserError
from ..pluginmanager import PluginHost
from ..selection import validate_selection


def _read_only(a: np.ndarray, dtype: Any) -> np.ndarray:
    arr = np.asarray(a)
    if arr.dtype != dtype:
        arr = arr.astype(dtype)
    view = arr.view()
    view.setflags(write=False)
    return view


def build_context(
    *,
    selector: str,
    capabilities: Capabilities,
    features: np.ndarray,
    selected: np.ndarray | None = None,
    seed: int = 0,
    round: int = 0,
    rounds: int = 1,
    num_classes: int = 0,
    device: Any = "cpu",
    trained_steps: int = 0,
    labels: np.ndarray | None = None,
    text: Any = None,
    outputs: OutputsProvider | None = None,
    model: Any = None,
    report: Callable[[int, int], None] | None = None,
) -> SelectionContext:
    """The read-only context of one round, holding only what `capabilities.uses` declares."""
    uses = capabilities.uses
    if "labels" in uses and labels is None:
        raise UserError(f"selector '{selector}' uses labels, but none were given (pass the pool's labels).")
    return SelectionContext(
        features=_read_only(features, np.float32),
        selected=_read_only(selected if selected is not None else np.zeros(0), np.int64),
        seed=int(seed),
        round=int(round),
        rounds=int(rounds),
        num_classes=int(num_classes),
        device=device,
        trained_steps=int(trained_steps),
        selector=selector,
        uses=uses,
        _labels=_read_only(labels, np.int64) if "labels" in uses and labels is not None else None,
        _text=text if "text" in uses else None,
        _outputs=outputs if "model" in uses else None,
        _model=model if "model" in uses else None,
        _report=report,
    )


@dataclass(frozen=True)
class SelectorSlot:
    """A selector built from the registry, with its declared capabilities."""

    name: str
    selector: Any
    capabilities: Capabilities
    source: str = ""


def make_selector(host: PluginHost, name: str, options: Mapping[str, Any] | None = None) -> SelectorSlot:
    entry = host.selectors().get(name)
    options = dict(options or {})
    try:
        inspect.signature(entry.factory).bind(**options)
    except TypeError:
        accepted = [p for p in inspect.signature(entry.factory).parameters if p not in ("self", "kwargs")]
        bad = [k for k in options if k not in accepted]
        raise UserError(
            f"selector '{name}' does not take option(s) {', '.join(map(repr, bad)) or repr(options)}; "
            f"it accepts: {', '.join(accepted) or 'no options'}."
        ) from None
    except ValueError:  # a builtin or C factory without a signature: let the call decide
        pass
    try:
        selector = entry.factory(**options)
    except TypeError as e:
        raise UserError(f"selector '{name}' does not take these options {options}: {e}.") from None
    if not callable(getattr(selector, "select", None)):
        raise PluginError(f"selector '{name}' ({entry.source}) has no select(ctx, count) method.")
    return SelectorSlot(name, selector, capabilities_of(selector, name), entry.source)


@dataclass
class Picked:
    indices: np.ndarray
    seconds: float
    forward_batches: int
    stats: dict[str, Any] = field(default_factory=dict)
    scores: np.ndarray | None = None


def run_selection(slot: SelectorSlot, ctx: SelectionContext, count: int) -> Picked:
    """The selector's picks, checked (count, range, uniqueness, not picked before); a crash
    inside the plugin becomes one paragraph naming it and where it failed."""
    start = time.perf_counter()
    try:
        result = slot.selector.select(ctx, count)
    except UserError:
        raise
    except Exception as e:
        frames = traceback.extract_tb(e.__traceback__)
        where = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise PluginError(
            f"selector '{slot.name}' ({slot.source or 'plugin'}) failed in select(): {type(e).__name__}: {e}{where}. "
            "This is a bug in the selector plugin; its conformance kit (vecaf_bench.testing.check_selector) "
            "runs it on a real tiny model and may show it faster."
        ) from e
    seconds = time.perf_counter() - start
    stats: dict[str, Any] = {}
    scores = None
    if isinstance(result, Selection):
        stats, scores, result = dict(result.stats), result.scores, result.indices
    elif getattr(slot.selector, "round_stats", None):
        warn_once(
            f"round_stats:{type(slot.selector).__qualname__}",
            f"selector '{slot.name}' reports statistics in `round_stats`, deprecated since vecaf-bench API 1.0: "
            "return vecaf_bench.api.Selection(indices, stats={...}) from select().",
        )
        stats = dict(slot.selector.round_stats)
    arr = validate_selection(slot.name, result, count, ctx.pool_size, ctx.selected)
    return Picked(arr, seconds, ctx.forward_batches, stats, None if scores is None else np.asarray(scores))
