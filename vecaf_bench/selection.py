"""The engine's check of what a selector returns (count, range, uniqueness, not picked before).

The selector contract itself (`Capabilities`, `SelectionContext`, `Selector`) is public in
`vecaf_bench.api`; the names that lived here before API 1.0 still import, with a warning.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from .errors import PluginError

_MOVED = {"SelectionContext": "SelectionContext", "Selector": "Selector", "KNOWN_USES": "USES"}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        from . import api
        from .api.deprecations import warn_once

        warn_once(
            f"selection.{name}",
            f"`vecaf_bench.selection.{name}` is deprecated since vecaf-bench API 1.0; "
            f"import `{_MOVED[name]}` from vecaf_bench.api.",
        )
        return getattr(api, _MOVED[name])
    raise AttributeError(f"module 'vecaf_bench.selection' has no attribute '{name}'")


def validate_selection(plugin: str, picked: Any, count: int, pool_size: int, earlier: np.ndarray) -> np.ndarray:
    """The indices as int64, or a PluginError that names the plugin and what it got wrong."""
    try:
        torch = sys.modules.get("torch")  # a selector that returns a tensor has imported it
        if torch is not None and isinstance(picked, torch.Tensor):  # before np.asarray, which fails on a CUDA tensor
            arr = picked.detach().cpu().numpy()
        else:
            arr = np.asarray(picked if isinstance(picked, np.ndarray) else list(picked))
    except Exception as e:
        raise PluginError(
            f"selector '{plugin}' returned {type(picked).__name__}, not a list of indices ({e})."
        ) from None
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise PluginError(
            f"selector '{plugin}' must return a 1-d sequence of integer pool indices, got shape {arr.shape} "
            f"of {arr.dtype}. Fix the plugin's select()."
        )
    arr = arr.astype(np.int64)
    problems = []
    if len(arr) != count:
        problems.append(f"returned {len(arr)} indices where {count} were asked for")
    bad = arr[(arr < 0) | (arr >= pool_size)]
    if len(bad):
        problems.append(f"returned indices outside the pool [0, {pool_size}): {sorted(set(bad.tolist()))[:5]}")
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        problems.append(f"returned duplicates: {uniq[counts > 1][:5].tolist()}")
    again = np.intersect1d(arr, earlier)
    if len(again):
        problems.append(f"picked {len(again)} indices already selected in earlier rounds: {again[:5].tolist()}")
    if problems:
        raise PluginError(
            f"selector '{plugin}' broke the selector contract: {'; '.join(problems)}. "
            "The run was stopped before training; fix the plugin's select()."
        )
    return arr
