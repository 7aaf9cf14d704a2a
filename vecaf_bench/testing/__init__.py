"""Conformance kits for plugins: call them from your plugin's own tests.

    from vecaf_bench.testing import check_selector
    check_selector(MySelector, options={"chunk": 64}, name="mine")
"""

from __future__ import annotations

from . import plugins, recipes, selectors
from .plugins import *  # noqa: F403
from .recipes import *  # noqa: F403
from .selectors import *  # noqa: F403

__all__ = [*selectors.__all__, *plugins.__all__, *recipes.__all__]
