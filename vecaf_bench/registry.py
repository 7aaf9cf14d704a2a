"""Registries of named factories, filled by the plugin manager from every plugin's hooks.

A factory is checked against its kind's contract when it is registered (`factory_problem`), so a
plugin that breaks it is named at load time, with its package and module, instead of failing in
the middle of a run (or, worse, doing nothing).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .errors import PluginError, did_you_mean, unknown

KINDS = ("selectors", "backbones", "recipes", "datasets", "text_encoders", "shifts", "trackers")
_SINGULAR = {
    "selectors": "selector",
    "backbones": "backbone",
    "recipes": "recipe",
    "datasets": "dataset",
    "trackers": "tracker",
    "text_encoders": "text encoder",
    "shifts": "shift",
}
#: What each kind's factory is called with (shown when a factory is not callable).
_CALLED_AS = {
    "selectors": "factory(**options) -> Selector",
    "backbones": "factory(model_name, weights=...) -> Backbone",
    "recipes": "factory(request: RecipeRequest, **options) -> Recipe",
    "datasets": "factory(request: DatasetRequest) -> DatasetSplits",
    "text_encoders": "factory() or factory(model[, pretrained]) -> TextEncoder",
    "shifts": "factory(request: ShiftRequest) -> [OODSplit, ...]",
    "trackers": "factory(config, run_dir) -> an object with life-cycle hooks",
}


#: What the runner calls on a recipe (a class registered as a recipe factory is checked for them).
RECIPE_METHODS = ("train_round", "state_dict", "restore")


def singular(kind: str) -> str:
    return _SINGULAR.get(kind, kind)


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Any
    source: str  # the distribution (package) that registered it, or "--plugin <module>"
    version: str
    module: str = ""  # the plugin module whose hook registered it

    @property
    def origin(self) -> str:
        """Where it comes from, for messages: "module 'x.y' of package 'x'"."""
        return describe_origin(self.source, self.module)


def describe_origin(source: str, module: str) -> str:
    """For messages: module 'm' of package 'p', module 'm' (loaded with --plugin m), or module 'm'."""
    if source.startswith("--plugin"):
        return f"module '{module or source.split()[-1]}' (loaded with {source})"
    if not source:
        return f"module '{module}'"
    return f"module '{module}' of package '{source}'" if module else f"package '{source}'"


def _uses_problem(uses: Any, known: Iterable[str]) -> str | None:
    if isinstance(uses, str) or not isinstance(uses, Iterable):
        return f"declares uses={uses!r}: it must be a set of names, e.g. {{'labels'}}"
    known = sorted(known)
    bad = sorted(str(u) for u in set(uses) - set(known))
    if bad:
        hint = did_you_mean(bad[0], known)
        return f"declares unknown uses {bad} (known: {', '.join(known)}){'.' + hint if hint else ''}"
    return None


def selector_problem(factory: Any) -> str | None:
    """What a selector factory breaks of the `vecaf_bench.api.Selector` contract, or None.

    A class is checked statically (nothing is instantiated): it needs a `select` method and
    either ``capabilities = Capabilities(...)`` or the legacy (pre-1.0) ``uses`` attribute. A
    factory function is opaque until it is called: only its callability is checked here.
    """
    from .api.selector import USES, Capabilities

    if not callable(factory):
        return f"is {type(factory).__name__} {factory!r}, not a class or function that makes a selector"
    if not inspect.isclass(factory):
        caps = getattr(factory, "capabilities", None)
        if caps is not None and not isinstance(caps, Capabilities):
            return (
                f"has capabilities of type {type(caps).__name__}; write capabilities = Capabilities(...) "
                "(from vecaf_bench.api import Capabilities)"
            )
        return _uses_problem(caps.uses, USES) if caps is not None else None
    if not callable(getattr(factory, "select", None)):
        return (
            "has no select method; a selector defines select(self, ctx: SelectionContext, count: int) "
            "returning the picked pool indices"
        )
    annotations = getattr(factory, "__annotations__", {})
    static = inspect.getattr_static(factory, "capabilities", None)
    if static is not None:
        if isinstance(static, property):  # computed per instance: checked when the selector is made
            return None
        if not isinstance(static, Capabilities):
            return (
                f"has capabilities of type {type(static).__name__}; write "
                "capabilities = Capabilities(uses={...}) (from vecaf_bench.api import Capabilities)"
            )
        return _uses_problem(static.uses, USES)
    if "capabilities" in annotations:  # declared on the class, set in __init__
        return None
    if hasattr(factory, "uses"):  # API < 1.0: loose attributes (capabilities_of warns when it is used)
        return _uses_problem(inspect.getattr_static(factory, "uses"), USES)
    if "uses" in annotations:
        return None
    return (
        "declares no capabilities: add "
        "capabilities = Capabilities(uses={...}) (from vecaf_bench.api import Capabilities), with the "
        f"subset of {sorted(USES)} it reads beyond the pool features (empty: features only)"
    )


def factory_problem(kind: str, factory: Any) -> str | None:
    """What `factory` breaks of its kind's contract (a phrase that follows its name), or None."""
    if kind == "selectors":
        return selector_problem(factory)
    if kind == "recipes" and inspect.isclass(factory):  # a function is opaque until it is called
        missing = [m for m in RECIPE_METHODS if not callable(getattr(factory, m, None))]
        if missing:
            return (
                f"has no {', '.join(missing)} method{'s' if len(missing) > 1 else ''}; a recipe "
                "(vecaf_bench.api.Recipe) defines train_round(...), state_dict() and restore(ckpt), and the "
                "properties step and train_images"
            )
    if not callable(factory):
        return (
            f"is {type(factory).__name__} {factory!r}, not callable: a {singular(kind)} factory is called as "
            f"{_CALLED_AS.get(kind, 'factory(...)')}"
        )
    return None


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    def add(self, entry: Entry) -> None:
        what = singular(self.kind)
        if not isinstance(entry.name, str) or not entry.name:
            raise PluginError(
                f"{entry.origin} registers a {what} under the name {entry.name!r}; names must be non-empty "
                "strings: return {'my_name': factory} from its hook."
            )
        problem = factory_problem(self.kind, entry.factory)
        if problem:
            cls = f" (class {entry.factory.__qualname__})" if inspect.isclass(entry.factory) else ""
            end = "" if problem.endswith((".", "?")) else "."
            fix = "" if entry.source.startswith("--plugin") else f", or uninstall package '{entry.source}'"
            raise PluginError(f"{what} '{entry.name}'{cls} from {entry.origin} {problem}{end} Fix the plugin{fix}.")
        old = self._entries.get(entry.name)
        if old is not None and (old.source, old.module) != (entry.source, entry.module):
            raise PluginError(
                f"{what} '{entry.name}' is registered twice: by {old.origin} and by {entry.origin}. "
                "Rename it in one of the two (or uninstall one of the packages)."
            )
        self._entries[entry.name] = entry

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry]:
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def get(self, name: str, hint: str = "") -> Entry:
        if name not in self._entries:
            raise unknown(_SINGULAR[self.kind], name, self._entries, hint)
        return self._entries[name]
