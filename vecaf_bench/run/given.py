"""`run --selection FILE`: finetune on a selection made elsewhere instead of running a selector.

A selection is portable (LabelBench's point evaluation): picks made by `vecaf-bench select` on an
unlabelled folder, with one backbone, are finetuned and evaluated on the labelled copy of those
images with any backbone and recipe, under the same budgets and evaluation as a selector's run.

- A picks file (.csv / .jsonl / Label Studio .json, or a JSON list of paths) names images; they are
  matched to the dataset's pool by relative path, else by a path ending (`img_7.png` made on the
  unlabelled folder is `cat/img_7.png` in the labelled copy), else by unique file name. The
  validation split is then carved from the pool outside the selection, so that every labelled
  pick is trained on.
- A run's `selected.json` (or a JSON list of numbers) holds pool indices: they point into the pool
  of a run on the same dataset and validation split, which is checked by size.

The run records where the selection came from (`summary.json` `selection`: file, SHA-256, size,
the selector, backbone and seed that made it, how it was matched), and the board names the row
after it unless a label is given.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..api.selector import Capabilities, SelectionContext
from ..data import DatasetSplits, FileImages, with_validation
from ..errors import UserError
from ..picks import Picks, match_portable, read_selection, selection_files

NAME = "selection"  # the run's selector name when it trains on a given selection


@dataclass
class GivenSelection:
    """The selector slot's stand-in: returns the given pool positions, in the file's order."""

    positions: np.ndarray
    origin: dict[str, Any] = field(default_factory=dict)
    capabilities = Capabilities(uses=(), randomized=False)

    def select(self, ctx: SelectionContext, count: int) -> np.ndarray:
        return self.positions[:count]


def relative_paths(source: Any) -> list[str] | None:
    """The image paths of SOURCE relative to its folder, or None when it has no files (arrays)."""
    if not isinstance(source, FileImages):
        return None
    paths = source.paths
    rel = getattr(paths, "relative", None)
    if rel is not None:
        return [rel(i) for i in range(len(paths))]
    return [Path(p).as_posix() for p in paths]


def _few(values: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in values[:5]) + (", ..." if len(values) > 5 else "")


def label_text(origin: dict[str, Any]) -> str:
    """The board's row name for a given selection: the file and what made it."""
    made = ", ".join(str(origin[k]) for k in ("selector", "backbone") if origin.get(k))
    files = "+".join(f.name for f in selection_files(str(origin["file"])))
    return files + (f" ({made})" if made else "")


def resolve_selection(path: str, splits: DatasetSplits, val_fraction: float) -> tuple[DatasetSplits, GivenSelection]:
    """SPLITS with their validation split, and the selection as positions in the resulting pool."""
    picks: Picks = read_selection(path)
    what = f"--selection '{path}'"
    if not len(picks):
        raise UserError(f"{what} holds no picks; give a file with at least one image.")
    if picks.indices is not None:
        out = with_validation(splits, val_fraction)
        n = len(out.pool)
        pos = np.asarray(picks.indices, dtype=np.int64)
        if picks.pool_size is not None and picks.pool_size != n:
            made = f" on dataset '{picks.dataset}'" if picks.dataset else ""
            raise UserError(
                f"{what} holds indices into a pool of {picks.pool_size:,} images (the run that wrote it{made}), "
                f"but this run's pool has {n:,}: the indices would name other images. Evaluate it on the same "
                "dataset and val_fraction, or select by image paths (vecaf-bench select --dataset FOLDER writes them)."
            )
        bad = pos[(pos < 0) | (pos >= n)]
        if len(bad):
            raise UserError(f"{what}: {len(bad)} of its {len(pos)} indices are outside this run's pool of {n:,} images "
                            f"({_few(bad)}); was it made on another dataset?")
        how = "index"
    else:
        pool_paths = relative_paths(splits.pool)
        if pool_paths is None:
            raise UserError(f"{what} names images by path, but dataset '{splits.name}' is held in memory, not as "
                            "files. Give a run's selected.json (pool indices) for it, or run on a folder dataset.")
        elsewhere = {name: p for name, src in (("test", splits.test), ("validation", splits.val))
                     if src is not None and (p := relative_paths(src)) is not None}
        raw, how = match_portable([p.replace("\\", "/") for p in picks.paths], pool_paths, what, elsewhere)
        raw_arr = np.asarray(raw, dtype=np.int64)
        if splits.val is None and val_fraction > 0:
            out = with_validation(splits, val_fraction, reserved=np.unique(raw_arr))
            kept = out.carved_from[1] if out.carved_from is not None else np.arange(len(splits.pool))
            pos = np.searchsorted(kept, raw_arr)
        else:
            out, pos = with_validation(splits, val_fraction), raw_arr
    uniq, counts = np.unique(pos, return_counts=True)
    if (counts > 1).any():
        raise UserError(f"{what} lists {int((counts > 1).sum())} image(s) more than once (pool positions "
                        f"{_few(uniq[counts > 1])}); give each pick once.")
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in selection_files(path))).hexdigest()
    origin = {
        "file": str(path), "sha256": digest, "size": int(len(pos)), "matched_by": how,
        "selector": picks.selector, "backbone": picks.backbone, "seed": picks.seed,
    }
    return out, GivenSelection(pos, origin)
