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
from types import UnionType
from typing import Any, Union, get_args, get_origin

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


def declared_capabilities(entry: Any) -> Capabilities | None:
    """A registry entry's declared capabilities, read without calling anything (a factory function
    is opaque: None)."""
    import warnings

    from ..api import VecafBenchDeprecationWarning

    f = entry.factory
    if not inspect.isclass(f) and not isinstance(getattr(f, "capabilities", None), Capabilities):
        return None
    with warnings.catch_warnings():  # legacy `uses` attributes: the run warns, a listing does not
        warnings.simplefilter("ignore", VecafBenchDeprecationWarning)
        try:
            return capabilities_of(f, entry.name)
        except UserError:
            return None


@dataclass(frozen=True)
class SelectorSlot:
    """A selector built from the registry, with its declared capabilities."""

    name: str
    selector: Any
    capabilities: Capabilities
    source: str = ""


def _option_params(factory: Any) -> tuple[dict[str, tuple[inspect.Parameter, dict[str, Any]]], bool]:
    """The factory's options (each with the globals its annotation is read in), and whether that list is
    complete. A class's `**kwargs` passed on to its base (vecaf's to ActiveFT) is followed up the MRO."""
    found: dict[str, tuple[inspect.Parameter, dict[str, Any]]] = {}
    inits = [c.__dict__["__init__"] for c in factory.__mro__[:-1] if "__init__" in c.__dict__] \
        if isinstance(factory, type) else [factory]
    for fn in inits:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):  # a builtin or C factory without a signature
            return found, False
        open_ended = False
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                open_ended = True
            elif p.name != "self" and p.kind is not p.VAR_POSITIONAL:
                found.setdefault(p.name, (p, getattr(fn, "__globals__", {})))
        if not open_ended:
            return found, True
    return found, isinstance(factory, type)  # past the last __init__, object takes no options


def _expected(param: inspect.Parameter, namespace: dict[str, Any]) -> Any:
    """The option's declared type (its annotation, else its default's type); None: anything goes."""
    annotation = param.annotation
    if isinstance(annotation, str):  # `from __future__ import annotations`
        try:
            annotation = eval(annotation, dict(namespace))  # noqa: S307 - the plugin's own annotation
        except Exception:
            return None  # a name imported only under TYPE_CHECKING: not checkable here
    if annotation is inspect.Parameter.empty:
        default = param.default
        return type(default) if isinstance(default, bool | int | float | str) else None
    return None if annotation is Any else annotation


def _typed_options(
    name: str, factory: Any, options: dict[str, Any], flag: str, kind: str = "selector", skip_first: bool = False
) -> dict[str, Any]:
    """OPTIONS checked against the selector's declared types and converted to them (`tau: 0.1` from YAML as
    text becomes 0.1), in this one place rather than in each selector: a wrong type would otherwise surface
    as whatever the selector's first comparison raises ("'<=' not supported between 'str' and 'int'")."""
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    from ..errors import did_you_mean

    params, complete = _option_params(factory)
    if skip_first and params:  # a recipe factory's first parameter is its RecipeRequest, not an option
        params.pop(next(iter(params)))
    bad = [k for k in options if k not in params]
    if bad and complete:
        accepted = list(params)
        raise UserError(
            f"{kind} '{name}' does not take option(s) {', '.join(map(repr, bad))} "
            f"({flag}{bad[0]}=...).{did_you_mean(bad[0], accepted)} "
            f"It accepts: {', '.join(accepted) or 'no options'}."
        )
    out = dict(options)
    for key, value in options.items():
        if key not in params:
            continue
        param, namespace = params[key]
        expected = _expected(param, namespace)
        if expected is None:
            continue
        try:
            adapter = TypeAdapter(expected, config=ConfigDict(coerce_numbers_to_str=True, allow_inf_nan=False))
            if isinstance(value, bool) and "bool" not in str(expected):
                raise ValueError("a bool is not a number")
            if isinstance(value, str) and value.strip().lower() in ("none", "null") and "None" in str(expected):
                value = None  # as for config keys: --set selector_options.pool_batch=none
            out[key] = adapter.validate_python(value)
        except (ValidationError, ValueError):
            default = "" if param.default is inspect.Parameter.empty else f"; its default is {param.default!r}"
            raise UserError(
                f"{kind} '{name}' option '{key}' must be {_type_words(expected)}, got {value!r} "
                f"({flag}{key}=...){default}. Fix the value (the {kind} checks its range) "
                "and run again."
            ) from None
        except Exception:  # an annotation pydantic cannot check (a plugin's own class): the selector decides
            continue
    return out


def _type_words(expected: Any) -> str:
    words = {float: "a finite number (float)", int: "a whole number (int)", bool: "true or false (bool)",
             str: "text (str)", type(None): "none"}
    if expected in words:
        return words[expected]
    args = get_args(expected)
    if get_origin(expected) in (Union, UnionType) and all(a in words for a in args):
        return " or ".join(words[a] for a in sorted(args, key=lambda a: a is type(None)))
    return f"of type {str(expected).replace('typing.', '')}"


def check_selector_options(
    host: PluginHost, name: str, options: Mapping[str, Any] | None, flag: str = "--set selector_options."
) -> None:
    """The options' names and types checked against the selector's signature without building it:
    the CLI calls this before the run imports torch, so a typo answers in well under a second."""
    _typed_options(name, host.selectors().get(name).factory, dict(options or {}), flag)


def make_selector(
    host: PluginHost, name: str, options: Mapping[str, Any] | None = None, flag: str = "--set selector_options."
) -> SelectorSlot:
    """The selector built with its options checked; FLAG is how the user gives an option (messages
    name it: `run` takes --set selector_options.tau=..., `select` takes --set tau=...)."""
    entry = host.selectors().get(name)
    options = _typed_options(name, entry.factory, dict(options or {}), flag)
    try:
        selector = entry.factory(**options)
    except TypeError as e:
        raise UserError(
            f"selector '{name}' could not be built with options {options} ({e}). Check each option's name and "
            f"value ({flag}<name>=VALUE) against the selector's documentation."
        ) from None
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
    forward_images: int = 0


def select_with_bar(console: Any, slot: SelectorSlot, count: int, **context: Any) -> Picked:
    """One selection under a progress bar, for the `select` command. The bar's total is what the
    selector reports (iterations, not picks), so it is closed at that total, never at `count`."""
    from ..progress import make_progress

    with make_progress(console) as progress:
        task = progress.add_task(f"selection ({slot.name})", total=count, info="")
        report = lambda done, total: progress.update(task, completed=done, total=total)  # noqa: E731
        ctx = build_context(selector=slot.name, capabilities=slot.capabilities, report=report, **context)
        result = run_selection(slot, ctx, count)
        progress.update(task, completed=progress.tasks[0].total)
    return result


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
    return Picked(
        arr, seconds, ctx.forward_batches, stats, None if scores is None else np.asarray(scores), ctx.forward_images
    )
