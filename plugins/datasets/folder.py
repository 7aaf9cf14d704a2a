"""Any folder in the ImageNet layout: `--dataset /path/to/folder`.

    folder/train/<class>/*.jpg  +  folder/val/<class>/*.jpg   (or test/)
    folder/<class>/*.jpg        (no split: a stratified, seeded test split is made and stored)

Every file is checked once with PIL's `verify()`; damaged ones are reported with their paths
and skipped, or fatal with `--on-corrupt error`.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from vecaf_bench.data import DatasetRequest, DatasetSplits, FileImages, stratified_split
from vecaf_bench.errors import UserError
from vecaf_bench.hookspecs import hookimpl

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
TEST_DIRS = ("val", "test")


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(".") or name.startswith("~") or Path(name).exists()


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(root: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for c, name in enumerate(classes):
        d = root / name
        if not d.is_dir():
            continue
        for p in sorted(d.rglob("*")):
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
                paths.append(p)
                labels.append(c)
    return paths, labels


def _verify(paths: list[Path], labels: list[int], on_corrupt: str) -> tuple[list[Path], list[int], list[str]]:
    good_p, good_l, bad = [], [], []
    for p, y in zip(paths, labels, strict=True):
        try:
            with Image.open(p) as im:
                im.verify()
        except Exception as e:
            bad.append(f"{p} ({type(e).__name__})")
            continue
        good_p.append(p)
        good_l.append(y)
    if bad and on_corrupt == "error":
        raise UserError(
            f"{len(bad)} image(s) could not be decoded: {'; '.join(bad[:5])}{' …' if len(bad) > 5 else ''}. "
            "Remove or replace them, or run with --on-corrupt skip to leave them out."
        )
    if bad:
        print(
            f"warning: skipped {len(bad)} corrupt image(s): {'; '.join(bad[:10])}{' …' if len(bad) > 10 else ''}",
            file=sys.stderr,
        )
    return good_p, good_l, bad


def _fingerprint(root: Path, paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def load_folder(request: DatasetRequest) -> DatasetSplits:
    root = Path(request.name).expanduser()
    if not root.exists():
        raise UserError(
            f"dataset folder '{root}' does not exist. Give the path of a folder in the ImageNet layout "
            "(one sub-folder per class, or train/ and val/ folders of class sub-folders)."
        )
    if not root.is_dir():
        raise UserError(f"dataset '{root}' is a file, not a folder of class sub-folders.")
    split_dirs = {d: root / d for d in ("train", *TEST_DIRS) if (root / d).is_dir()}
    has_split = "train" in split_dirs and any(d in split_dirs for d in TEST_DIRS)
    class_root = split_dirs["train"] if has_split else root
    classes = [p.name for p in _class_dirs(class_root)]
    if not classes:
        raise UserError(
            f"dataset folder '{class_root}' holds no class sub-folders. The ImageNet layout is "
            "<folder>/<class>/<image files>."
        )
    info: dict[str, Any] = {"root": str(root), "layout": "train/val" if has_split else "class folders"}
    if has_split:
        test_root = next(split_dirs[d] for d in TEST_DIRS if d in split_dirs)
        pool_p, pool_l = _scan(class_root, classes)
        test_p, test_l = _scan(test_root, classes)
    else:
        all_p, all_l = _scan(root, classes)
        pool_p, pool_l, test_p, test_l = all_p, all_l, [], []
    if not pool_p:
        raise UserError(
            f"dataset folder '{class_root}' has class folders ({', '.join(classes[:5])}…) but no image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    pool_p, pool_l, bad_pool = _verify(pool_p, pool_l, request.on_corrupt)
    test_p, test_l, bad_test = _verify(test_p, test_l, request.on_corrupt)
    info["skipped"] = bad_pool + bad_test
    if not has_split:
        labels = np.asarray(pool_l)
        pool_idx, test_idx = stratified_split(labels, request.test_fraction, seed=0)
        test_p, test_l = [pool_p[i] for i in test_idx], labels[test_idx].tolist()
        pool_p, pool_l = [pool_p[i] for i in pool_idx], labels[pool_idx].tolist()
        info["split"] = {"test_fraction": request.test_fraction, "seed": 0, "test_files": [str(p) for p in test_p]}
    if not pool_p or not test_p:
        raise UserError(f"dataset folder '{root}' has no readable images left in its pool or test split.")
    fp = _fingerprint(root, pool_p + test_p)
    info.update(pool=len(pool_p), test=len(test_p))
    return DatasetSplits(
        name=str(root),
        pool=FileImages(pool_p, np.asarray(pool_l), f"folder:{fp}/pool"),
        test=FileImages(test_p, np.asarray(test_l), f"folder:{fp}/test"),
        classes=classes,
        info=info,
    )


@hookimpl
def vecaf_bench_resolve_dataset(name: str) -> Any:
    return load_folder if _looks_like_path(name) else None
