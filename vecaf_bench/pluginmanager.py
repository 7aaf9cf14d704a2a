"""Loads plugins the one way: pluggy entry points in group `vecaf_bench`.

The built-ins are found through the same entry-point group a third-party package uses, so
the core never imports a concrete plugin. `--plugin module.path` adds a module that is not
installed (a file on PYTHONPATH while it is being written).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import pluggy

from . import hookspecs
from .errors import UserError
from .registry import KINDS, Entry, Registry


class PluginHost:
    """The plugin manager plus the registries its plugins filled."""

    def __init__(self, extra_modules: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.pm.load_setuptools_entrypoints(hookspecs.PROJECT)
        self._sources: dict[int, tuple[str, str]] = {}
        for plugin, dist in self.pm.list_plugin_distinfo():
            self._sources[id(plugin)] = (dist.metadata["name"], dist.version)
        for path in extra_modules:
            module = _import_plugin(path)
            if not self.pm.is_registered(module):
                self.pm.register(module, name=path)
            self._sources.setdefault(id(module), (f"--plugin {path}", "local"))
        self.registries = {kind: Registry(kind) for kind in KINDS}
        for kind in KINDS:
            hook = getattr(self.pm.hook, f"vecaf_bench_add_{kind}")
            for impl in hook.get_hookimpls():
                found = impl.function()
                if not found:
                    continue
                source, version = self._sources.get(id(impl.plugin), (impl.plugin_name, "?"))
                for name, factory in dict(found).items():
                    self.registries[kind].add(Entry(name, factory, source, version))

    @property
    def hook(self) -> Any:
        return self.pm.hook

    def selectors(self) -> Registry:
        return self.registries["selectors"]

    def backbones(self) -> Registry:
        return self.registries["backbones"]

    def datasets(self) -> Registry:
        return self.registries["datasets"]

    def trackers(self) -> Registry:
        return self.registries["trackers"]

    def versions(self) -> dict[str, str]:
        return {src: ver for src, ver in self._sources.values()}


def _import_plugin(path: str) -> ModuleType:
    try:
        return importlib.import_module(path)
    except ModuleNotFoundError as e:
        raise UserError(
            f"--plugin '{path}' could not be imported ({e}). Give an importable module path "
            "(e.g. my_selectors.greedy) and make sure its folder is on PYTHONPATH."
        ) from None
