"""`vecaf-bench select`: one selector on precomputed features, indices to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from .budget import resolve_label_budget
from .config import parse_set
from .device import resolve_device
from .errors import UserError
from .pluginmanager import PluginHost
from .progress import make_progress
from .results import write_json_atomic
from .run.selection_round import build_context, make_selector, run_selection


def _load_npy(path: str, what: str) -> np.ndarray:
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file '{p}' does not exist.")
    try:
        return np.load(p, mmap_mode="r")
    except (ValueError, OSError) as e:
        raise UserError(f"{what} file '{p}' is not a .npy array ({e}).") from None


def select_from_files(
    features: str,
    budget: str,
    selector: str,
    out: str,
    labels: str | None = None,
    selected: str | None = None,
    seed: int = 0,
    device: str = "auto",
    options: list[str] | None = None,
    plugins: list[str] | None = None,
    console: Console | None = None,
) -> np.ndarray:
    console = console or Console(stderr=True, emoji=False)
    host = PluginHost(plugins or [])
    slot = make_selector(host, selector, parse_set(options or []))
    uses = slot.capabilities.uses
    if "model" in uses or "text" in uses:
        raise UserError(
            f"selector '{selector}' needs {', '.join(sorted(uses & {'model', 'text'}))}, which `select` on a "
            "features file cannot give; use `vecaf-bench run` instead."
        )
    feats = _load_npy(features, "features")
    if feats.ndim != 2:
        raise UserError(f"features file '{features}' must hold an (N, d) array, got shape {feats.shape}.")
    n = feats.shape[0]
    lab = None
    if labels is not None:
        lab = np.asarray(_load_npy(labels, "labels"))
        if lab.shape != (n,):
            raise UserError(f"labels file '{labels}' has shape {lab.shape}; the features need ({n},).")
    if "labels" in uses and lab is None:
        raise UserError(f"selector '{selector}' uses labels: pass --labels L.npy.")
    earlier = np.zeros(0, dtype=np.int64)
    if selected is not None:
        try:
            earlier = np.asarray(json.loads(Path(selected).read_text()), dtype=np.int64)
        except (OSError, ValueError) as e:
            raise UserError(f"--selected '{selected}' is not a JSON list of indices ({e}).") from None
    count = n - len(earlier) if slot.capabilities.whole_pool else resolve_label_budget(budget, n)
    if count > n - len(earlier):
        raise UserError(f"budget {count} is more than the {n - len(earlier)} pool samples not yet selected.")
    with make_progress(console) as progress:
        task = progress.add_task(f"selection ({selector})", total=count, info="")
        ctx = build_context(
            selector=selector,
            capabilities=slot.capabilities,
            features=feats,
            selected=earlier,
            seed=seed,
            device=resolve_device(device),
            labels=lab,
            num_classes=int(lab.max()) + 1 if lab is not None and len(lab) else 0,
            report=lambda done, total: progress.update(task, completed=done, total=total),
        )
        result = run_selection(slot, ctx, count)
        progress.update(task, completed=count)
    out_path = Path(out)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_path, [int(i) for i in result.indices])
    except OSError as e:
        raise UserError(f"--out '{out_path}' is not writable ({e.strerror or e}).") from None
    console.print(f"selected {count} of {n} with {selector} in {result.seconds:.2f} s -> {out_path}")
    return result.indices


