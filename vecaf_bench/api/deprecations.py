"""How the API tells a plugin author that something they use is deprecated.

A `FutureWarning` subclass, because Python shows those by default: the person who sees it is the
user running a third-party plugin, and the message says exactly what the plugin should change.
Each message is given once per process.
"""

from __future__ import annotations

import warnings

_seen: set[str] = set()


class VecafBenchDeprecationWarning(FutureWarning):
    """Something a plugin uses was deprecated by a newer vecaf-bench plugin API."""


def warn_once(key: str, message: str, stacklevel: int = 3) -> None:
    if key in _seen:
        return
    _seen.add(key)
    warnings.warn(message, VecafBenchDeprecationWarning, stacklevel=stacklevel)
