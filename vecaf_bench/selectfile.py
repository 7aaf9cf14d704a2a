"""`vecaf-bench select`: one selector on precomputed features, indices to a JSON file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console

from .budget import resolve_label_budget
from .config import parse_set
from .errors import UserError
from .pluginmanager import PluginHost
from .results import write_json_atomic

_EXPECTED = {
    "features": "an (N, d) array of numbers saved with numpy.save: np.save('F.npy', features)",
    "labels": "an (N,) array of integer class indices saved with numpy.save: np.save('L.npy', labels)",
}
_SHOWN = 5  # bad rows named in a message, then the count
_CHUNK = 65536  # rows checked at a time: a memory-mapped 1M x 768 file is never read whole


def _load_npy(path: str, what: str) -> np.ndarray:
    """The one array in a .npy file; anything else (text, CSV, .npz, pickles) is refused up front,
    naming the file and how to make the expected one, instead of numpy's allow_pickle message."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{what} file '{p}' does not exist.")
    expected = _EXPECTED[what]
    convert = ""
    if p.suffix.lower() in (".txt", ".csv", ".tsv"):
        sep = "','" if p.suffix.lower() == ".csv" else "'\\t'" if p.suffix.lower() == ".tsv" else "None"
        convert = f" For a text file: np.save('{p.stem}.npy', np.loadtxt('{p}', delimiter={sep}))."
    try:
        with p.open("rb") as f:
            magic = f.read(6)
    except OSError as e:
        raise UserError(f"{what} file '{p}' cannot be read ({e.strerror or e}).") from None
    if magic[:4] == b"PK\x03\x04":
        raise UserError(
            f"{what} file '{p}' is a .npz archive of several arrays; --{what} expects {expected} "
            f"(np.save('{p.stem}.npy', np.load('{p}')['<name>']))."
        )
    if magic != b"\x93NUMPY":
        raise UserError(f"{what} file '{p}' is not a .npy file; --{what} expects {expected}.{convert}")
    try:
        arr = np.load(p, mmap_mode="r")
    except (ValueError, OSError) as e:
        why = "it holds Python objects, not numbers" if "pickle" in str(e) or "objects" in str(e) else str(e)
        raise UserError(f"{what} file '{p}' is not a usable .npy array ({why}); --{what} expects {expected}.") from None
    return arr


def _rows(rows: np.ndarray, noun: str = "row") -> str:
    shown = ", ".join(str(int(i)) for i in rows[:_SHOWN])
    return f"{len(rows)} {noun}(s) ({shown}{', …' if len(rows) > _SHOWN else ''})"


def check_features(feats: np.ndarray, path: str) -> None:
    """Numbers, (N, d), every row finite: a NaN row crashes distance-based selectors and is
    silently picked by others, so it is refused by row, before any selection."""
    if feats.ndim != 2:
        raise UserError(f"features file '{path}' must hold an (N, d) array, got shape {feats.shape}.")
    if not feats.shape[0] or not feats.shape[1]:
        raise UserError(
            f"features file '{path}' holds an empty array of shape {feats.shape}; it needs N rows of d > 0 numbers."
        )
    if not (np.issubdtype(feats.dtype, np.number) or feats.dtype == np.bool_) or np.iscomplexobj(feats):
        raise UserError(
            f"features file '{path}' holds {feats.dtype} values; it needs real numbers (float32 or float64)."
        )
    if not np.issubdtype(feats.dtype, np.inexact):
        return  # integers are always finite
    bad = [start + np.flatnonzero(~np.isfinite(feats[start:start + _CHUNK]).all(axis=1))
           for start in range(0, feats.shape[0], _CHUNK)]
    rows = np.concatenate(bad)
    if len(rows):
        raise UserError(
            f"features file '{path}' has NaN or infinite values in {_rows(rows)} of {feats.shape[0]}. Fix the "
            "feature extraction, or drop those rows: keep = np.isfinite(F).all(axis=1); "
            "np.save('F_finite.npy', F.compress(keep, axis=0)) (the selected indices then count the kept rows)."
        )


def check_labels(lab: np.ndarray, path: str, n: int) -> np.ndarray:
    """(N,) non-negative integer class indices (whole-valued floats are taken as integers)."""
    if lab.shape != (n,):
        raise UserError(f"labels file '{path}' has shape {lab.shape}; the features need ({n},).")
    if np.issubdtype(lab.dtype, np.integer) or lab.dtype == np.bool_:
        out = lab.astype(np.int64)
    elif np.issubdtype(lab.dtype, np.floating):
        rows = np.flatnonzero(~np.isfinite(lab) | (lab != np.round(lab)))
        if len(rows):
            raise UserError(
                f"labels file '{path}' has values that are not integers in {_rows(rows)} "
                f"(e.g. {float(lab[rows[0]]):g}); labels are integer class indices 0..C-1: "
                "np.save('L.npy', labels.astype(int))."
            )
        out = lab.astype(np.int64)
    else:
        raise UserError(
            f"labels file '{path}' holds {lab.dtype} values, not integer class indices; turn names into "
            "indices with: names, labels = np.unique(values, return_inverse=True); np.save('L.npy', labels)."
        )
    rows = np.flatnonzero(out < 0)
    if len(rows):
        raise UserError(
            f"labels file '{path}' has negative values in {_rows(rows)} (e.g. {int(out[rows[0]])}); labels are "
            "class indices 0..C-1 for every row of the features."
        )
    return out


def _load_selected(path: str, n: int) -> np.ndarray:
    """Earlier picks: distinct whole numbers in [0, N), else the run would keep rows that do not exist."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"--selected '{path}' is not a JSON list of indices ({e}).") from None
    if not isinstance(raw, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in raw):
        raise UserError(f"--selected '{path}' is not a JSON list of integer indices, e.g. [3, 17, 42].")
    earlier = np.asarray(raw, dtype=np.int64)
    rows = np.flatnonzero((earlier < 0) | (earlier >= n))
    if len(rows):
        raise UserError(
            f"--selected '{path}' has indices outside the {n} feature rows (0..{n - 1}) at {_rows(rows, 'position')} "
            f"of the list, e.g. {int(earlier[rows[0]])}; was it written for another features file?"
        )
    if len(np.unique(earlier)) != len(earlier):
        raise UserError(f"--selected '{path}' lists some indices more than once; give each picked row once.")
    return earlier


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
    from .device import resolve_device
    from .run.selection_round import make_selector, select_with_bar

    console = console or Console(stderr=True, emoji=False)
    # the files first (numpy alone): a bad input is answered before a selector module imports torch
    feats = _load_npy(features, "features")
    check_features(feats, features)
    n = feats.shape[0]
    lab = None
    if labels is not None:
        lab = check_labels(np.asarray(_load_npy(labels, "labels")), labels, n)
    earlier = np.zeros(0, dtype=np.int64) if selected is None else _load_selected(selected, n)
    host = PluginHost(plugins or [])
    slot = make_selector(host, selector, parse_set(options or []), flag="--set ")
    uses = slot.capabilities.uses
    if "model" in uses or "text" in uses:
        raise UserError(
            f"selector '{selector}' needs {', '.join(sorted(uses & {'model', 'text'}))}, which `select` on a "
            "features file cannot give; use `vecaf-bench run` instead."
        )
    if "labels" in uses and lab is None:
        raise UserError(f"selector '{selector}' uses labels: pass --labels L.npy.")
    count = n - len(earlier) if slot.capabilities.whole_pool else resolve_label_budget(budget, n)
    if count > n - len(earlier):
        raise UserError(f"budget {count} is more than the {n - len(earlier)} pool samples not yet selected.")
    result = select_with_bar(
        console, slot, count, features=feats, selected=earlier, seed=seed, device=resolve_device(device),
        labels=lab, num_classes=int(lab.max()) + 1 if lab is not None and len(lab) else 0,
    )
    out_path = Path(out)
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out_path, [int(i) for i in result.indices])
    except OSError as e:
        raise UserError(f"--out '{out_path}' is not writable ({e.strerror or e}).") from None
    console.print(f"selected {count} of {n} with {selector} in {result.seconds:.2f} s -> {out_path}")
    return result.indices


