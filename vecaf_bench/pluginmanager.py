"""Loads plugins the one way: pluggy entry points in group `vecaf_bench`.

The built-ins are found through the same entry-point group a third-party package uses, so
the core never imports a concrete plugin. `--plugin module.path` adds a module that is not
installed (a file on PYTHONPATH while it is being written).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib import metadata
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
        self._sources: dict[int, tuple[str, str]] = {}
        self._load_entry_points()
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

    def _load_entry_points(self) -> None:
        """pluggy's `load_setuptools_entrypoints`, but a plugin that fails to import is named."""
        seen = set()
        for dist in metadata.distributions():
            for ep in dist.entry_points:
                if ep.group != hookspecs.PROJECT or ep.name in seen:
                    continue
                seen.add(ep.name)
                if self.pm.get_plugin(ep.name) is not None or self.pm.is_blocked(ep.name):
                    continue
                try:
                    plugin = ep.load()
                except Exception as e:
                    raise UserError(
                        f"plugin '{ep.name}' from package '{dist.metadata['name']}' failed to load "
                        f"({type(e).__name__}: {e}). Fix or uninstall that package (pip uninstall "
                        f"{dist.metadata['name']})."
                    ) from None
                self.pm.register(plugin, name=ep.name)
                self._sources[id(plugin)] = (dist.metadata["name"], dist.version)

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

    def text_encoders(self) -> Registry:
        return self.registries["text_encoders"]

    def shifts(self) -> Registry:
        return self.registries["shifts"]

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
