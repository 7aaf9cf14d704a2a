"""Loads plugins the one way: pluggy entry points in group `vecaf_bench`.

The built-ins are found through the same entry-point group a third-party package uses, so
the core never imports a concrete plugin. `--plugin module.path` adds a module that is not
installed (a file on PYTHONPATH while it is being written).

Registration cannot fail silently: a plugin module that implements no hook (a function without
`@hookimpl`, or with another project's marker), a misspelled hook name (pluggy's
`check_pending`), a hook whose arguments are not the spec's, a registration hook that does not
return ``{name: factory}``, a factory that breaks its kind's contract, and two plugins that
register one name are each a `PluginError` naming the package and the module. Objects
registered at run time (trackers) go through `PluginHost.register_observer`, which checks them
the same way.
"""

from __future__ import annotations

import importlib
import inspect
import re
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import PluginError, UserError, did_you_mean
from .registry import KINDS, Entry, Registry, describe_origin, singular

if TYPE_CHECKING:
    from .config import RunConfig

_IMPL_ATTR = hookspecs.PROJECT + "_impl"
_HOOK_PREFIX = hookspecs.PROJECT + "_"
_DECORATE = "Decorate each hook function with @hookimpl from vecaf_bench.api (from vecaf_bench.api import hookimpl)"


@dataclass(frozen=True)
class _Origin:
    """Where a plugin object comes from: the distribution (or "--plugin <module>") and module."""

    package: str
    version: str
    module: str
    entry_point: str = ""
    label: str = ""  # what the object is, when it is not a plugin module ("tracker 'x' (class X)")

    def describe(self) -> str:
        ep = f" (entry point '{self.entry_point}')" if self.entry_point else ""
        where = describe_origin(self.package, self.module) + ep
        return f"{self.label} from {where}" if self.label else f"plugin {where}"

    def fix(self, do: str = "") -> str:
        if self.package.startswith("--plugin") or not self.package:
            return do or "Fix the module"
        return f"{do or 'Fix the plugin'}, or uninstall its package (pip uninstall {self.package})"


class PluginHost:
    """The plugin manager plus the registries its plugins filled."""

    def __init__(self, extra_modules: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._origins: dict[int, _Origin] = {}
        self._load_entry_points()
        for path in extra_modules:
            self._load_module(path)
        self._check_pending()
        self.registries = {kind: Registry(kind) for kind in KINDS}
        for kind in KINDS:
            self._fill(kind)

    # -- loading ----------------------------------------------------------------------------------
    def _load_entry_points(self) -> None:
        """pluggy's `load_setuptools_entrypoints`, but a plugin that fails is named."""
        seen: set[tuple[str, str]] = set()
        for dist in metadata.distributions():
            eps = dist.entry_points.select(group=hookspecs.PROJECT)
            if not eps:  # most packages: their METADATA is not parsed (a quarter of a second for all)
                continue
            package = dist.metadata["name"] or "(a distribution without a name)"
            key = re.sub(r"[-_.]+", "-", package).lower()
            for ep in eps:
                if (key, ep.name) in seen:  # the same distribution found twice on sys.path
                    continue
                seen.add((key, ep.name))
                # two packages may use one entry-point name: their registered names still must differ
                name = ep.name if self.pm.get_plugin(ep.name) is None else f"{package}:{ep.name}"
                if self.pm.is_blocked(name):
                    continue
                origin = _Origin(package, dist.version, ep.value, ep.name)
                try:
                    plugin = ep.load()
                except Exception as e:
                    raise PluginError(
                        f"{origin.describe()} failed to import ({type(e).__name__}: {e}{_where(e)}). {origin.fix()}."
                    ) from None
                if self.pm.is_registered(plugin):  # two entry points naming one module
                    continue
                self._register(plugin, name, origin)

    def _load_module(self, path: str) -> None:
        module = _import_plugin(path)
        if self.pm.is_registered(module):  # also installed: keeps its package as its origin
            return
        name = path if self.pm.get_plugin(path) is None else f"--plugin {path}"
        self._register(module, name, _Origin(f"--plugin {path}", "local", path))

    def _register(self, plugin: Any, name: str | None, origin: _Origin) -> str:
        try:
            registered = self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as e:
            raise PluginError(
                f"{origin.describe()} has a hook implementation that does not match its spec: "
                f"{' '.join(str(e).split())}. The hooks and their parameters are in vecaf_bench.hookspecs. "
                f"{origin.fix()}."
            ) from None
        self._origins[id(plugin)] = origin
        try:
            _check_hooks(self.pm, plugin, origin)
        except PluginError:
            self.pm.unregister(plugin)
            raise
        return registered or str(name)

    def _check_pending(self) -> None:
        """pluggy's `check_pending`: every hook implementation has a spec (no misspelled hooks)."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as e:
            origin = self._origin_of(e.plugin)
            callers = self.pm.get_hookcallers(e.plugin) or []
            bad = [c.name for c in callers if not c.has_spec()] or ["?"]
            known = [n for n, c in vars(self.pm.hook).items() if not n.startswith("_") and c.has_spec()]
            raise PluginError(
                f"{origin.describe()} implements unknown hook '{bad[0]}', which vecaf-bench never calls."
                f"{did_you_mean(bad[0], known)} The hooks are listed in vecaf_bench.hookspecs: "
                f"{', '.join(sorted(known))}. {origin.fix('Rename the function')}."
            ) from None

    def _origin_of(self, plugin: Any) -> _Origin:
        found = self._origins.get(id(plugin))
        if found is not None:
            return found
        module = plugin.__name__ if inspect.ismodule(plugin) else type(plugin).__module__
        return _Origin("", "?", module)

    def _fill(self, kind: str) -> None:
        hookname = f"vecaf_bench_add_{kind}"
        for impl in getattr(self.pm.hook, hookname).get_hookimpls():
            if impl.hookwrapper or impl.wrapper:
                continue
            origin = self._origin_of(impl.plugin)
            try:
                found = impl.function()
            except UserError:
                raise
            except Exception as e:
                raise PluginError(
                    f"{origin.describe()}: its {hookname} raised {type(e).__name__}: {e}{_where(e)}. {origin.fix()}."
                ) from None
            if not isinstance(found, Mapping):
                got = "None (is its return statement missing?)" if found is None else type(found).__name__
                raise PluginError(
                    f"{origin.describe()}: its {hookname} returned {got}; it must return a mapping of "
                    f"{singular(kind)} names to factories, e.g. {{'my_name': MyFactory}} ({{}} registers "
                    f"nothing). {origin.fix()}."
                )
            for name, factory in found.items():
                self.registries[kind].add(Entry(name, factory, origin.package, origin.version, origin.module))

    # -- run time -----------------------------------------------------------------------------------
    def register_observer(self, obj: Any, name: str = "") -> str:
        """Registers an object with life-cycle hooks (a tracker the runner made) and checks it as a
        plugin module is checked: at least one hook, every `vecaf_bench_*` method decorated, no
        unknown hook, arguments as in the spec. On a `PluginError` nothing stays registered.
        Undo with ``host.pm.unregister(obj)``. Returns the name it is registered under."""
        label = f"tracker '{name}' (class {type(obj).__qualname__})" if name else f"{type(obj).__qualname__} object"
        registry = self.registries["trackers"]
        if name and name in registry:
            e = registry.get(name)
            origin = _Origin(e.source, e.version, e.module, label=label)
        else:
            origin = _Origin("", "?", type(obj).__module__, label=label)
        registered = self._register(obj, None, origin)
        try:
            self._check_pending()
        except PluginError:
            self.pm.unregister(obj)
            raise
        return registered

    # -- before a run -------------------------------------------------------------------------------
    def check_run_names(self, cfg: RunConfig) -> None:
        """Every plugin name CFG gives (selector, cold_start, backbone family, recipe, text encoder,
        trackers, shifts, dataset), looked up in the order the run uses them, so that a misspelled name is refused with
        its closest match before the run imports torch and timm (seconds). What only the plugin can
        check (the model after `timm:`, a dataset folder's contents) is checked when it is made."""
        from .shifts import parse_shift

        if not cfg.selection:  # a given selection replaces the selector
            self.selectors().get(cfg.selector)
        if cfg.cold_start not in (None, "self"):
            hint = "It is cold_start's value: name a label-free selector for round 0, or self."
            self.selectors().get(cfg.cold_start, hint=hint)
        family, sep, _ = cfg.backbone.partition(":")
        self.backbones().get(family if sep else "timm")  # a bare model name is timm's
        self.recipes().get(cfg.recipe, hint="It is recipe's value (--set recipe=...).")
        if cfg.text_encoder != "auto":  # looked up only by selectors that read text, so named here
            self.text_encoders().get(
                cfg.text_encoder.partition(":")[0], hint="It is text_encoder's value (--set text_encoder=...)."
            )
        for tracker in cfg.trackers:
            self.trackers().get(tracker)
        for shift in cfg.shifts:
            self.shifts().get(parse_shift(shift)[0])
        if cfg.dataset not in self.datasets() and self.hook.vecaf_bench_resolve_dataset(name=cfg.dataset) is None:
            self.datasets().get(
                cfg.dataset, hint="Or give the path of a folder in the ImageNet layout (one sub-folder per class)."
            )

    # -- access -------------------------------------------------------------------------------------
    @property
    def hook(self) -> Any:
        return self.pm.hook

    def selectors(self) -> Registry:
        return self.registries["selectors"]

    def backbones(self) -> Registry:
        return self.registries["backbones"]

    def recipes(self) -> Registry:
        return self.registries["recipes"]

    def datasets(self) -> Registry:
        return self.registries["datasets"]

    def trackers(self) -> Registry:
        return self.registries["trackers"]

    def text_encoders(self) -> Registry:
        return self.registries["text_encoders"]

    def shifts(self) -> Registry:
        return self.registries["shifts"]

    def versions(self) -> dict[str, str]:
        return {o.package: o.version for o in self._origins.values() if o.package}


def _check_hooks(pm: pluggy.PluginManager, plugin: Any, origin: _Origin) -> None:
    """A registered plugin implements at least one hook and leaves no `vecaf_bench_*` function
    undecorated (pluggy would skip it without a word)."""
    undecorated, foreign = _unmarked_hooks(plugin)
    if not undecorated and pm.get_hookcallers(plugin):
        return
    known = sorted(n for n in vars(hookspecs) if n.startswith(_HOOK_PREFIX))
    does = "observes nothing" if origin.label else "registers nothing"
    if pm.get_hookcallers(plugin):
        head = f"{origin.describe()} has a hook that pluggy skips."
    else:
        head = f"{origin.describe()} implements no vecaf_bench hook, so it {does}."
    if undecorated:
        names = ", ".join(undecorated)
        one = len(undecorated) == 1
        detail = f"Its {names} {'is' if one else 'are'} not decorated with vecaf_bench's @hookimpl"
        if foreign:
            marks = ", ".join(sorted({m for ms in foreign.values() for m in ms}))
            detail += f" ({', '.join(foreign)} carries the hookimpl marker of another project: {marks})"
        detail += f", so pluggy never calls {'it' if one else 'them'}."
        typo = [n for n in undecorated if n not in known]
        if typo:
            detail += f" ('{typo[0]}' is not a hook either.{did_you_mean(typo[0], known)})"
    else:
        detail = f"It defines none of the hooks of vecaf_bench.hookspecs ({', '.join(known)})."
    example = (
        "`@hookimpl` above `def vecaf_bench_run_end(self, run, summary): ...`"
        if origin.label
        else "`@hookimpl` above `def vecaf_bench_add_selectors(): return {'name': MySelector}`"
    )
    raise PluginError(f"{head} {detail} {_DECORATE}, e.g. {example}. {origin.fix()}.")


def _unmarked_hooks(plugin: Any) -> tuple[list[str], dict[str, list[str]]]:
    """Functions named like a hook but without vecaf_bench's marker, and the other projects'
    markers (``pytest`` for ``@pytest.hookimpl``) some of them carry."""
    undecorated: list[str] = []
    foreign: dict[str, list[str]] = {}
    for attr in dir(plugin):
        if not attr.startswith(_HOOK_PREFIX):
            continue
        value = inspect.getattr_static(plugin, attr, None)
        func = getattr(value, "__func__", value)  # classmethod, staticmethod, bound method
        if not (inspect.isfunction(func) or inspect.ismethod(func)):
            continue
        holders = [value, func]
        if any(isinstance(getattr(h, _IMPL_ATTR, None), dict) for h in holders):
            continue
        undecorated.append(attr)
        marks = sorted(
            {
                k[: -len("_impl")]
                for h in holders
                for k, v in getattr(h, "__dict__", {}).items()
                if k.endswith("_impl") and isinstance(v, dict)
            }
        )
        if marks:
            foreign[attr] = marks
    return undecorated, foreign


def _where(e: BaseException) -> str:
    """' at FILE:LINE' of the innermost frame of `e`'s traceback, or ''."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if not f.filename.startswith("<frozen")]
    return f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _import_plugin(path: str) -> ModuleType:
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        if e.name and e.name != path and not path.startswith(e.name + "."):
            raise PluginError(
                f"--plugin '{path}' could not be imported: it imports '{e.name}', which is not installed ({e}). "
                f"Install it (pip install ...) or fix the import in module '{path}'."
            ) from None
        raise PluginError(
            f"--plugin '{path}' could not be imported ({e}). Give an importable module path "
            "(e.g. my_selectors.greedy) and make sure its folder is on PYTHONPATH."
        ) from None
    except Exception as e:
        raise PluginError(
            f"--plugin '{path}' could not be imported: module '{path}' raised {type(e).__name__}: {e}{_where(e)}. "
            "Fix the module."
        ) from None
