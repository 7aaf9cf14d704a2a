"""What the suite's fork server imports once for all the runs it forks (see suite.forked): torch,
timm, the engine and every installed plugin module. Nothing here starts a thread or touches a GPU,
so a fork of the server is as clean as a fresh interpreter."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

import timm  # noqa: F401
import torch  # noqa: F401

import vecaf_bench.runner  # noqa: F401

for _ep in entry_points(group="vecaf_bench"):
    try:
        importlib.import_module(_ep.value.split(":")[0])
    except Exception:  # noqa: BLE001 - a broken plugin fails in its run, with the run's own message
        pass
