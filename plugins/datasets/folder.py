"""Any folder in the ImageNet layout: `--dataset /path/to/folder`.

    folder/train/<class>/*.jpg  +  folder/val/<class>/*.jpg   (or test/)
    folder/<class>/*.jpg        (no split: a stratified, seeded test split is made and stored)

The file list is built once (every file opened with PIL then, damaged ones recorded) and cached
by `vecaf_bench.datastore.index_folders`; damaged files are reported with their paths on every
load and skipped, or fatal with `--on-corrupt error`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vecaf_bench.api import (
    IMAGE_SUFFIXES,
    SPLIT_SEED,
    DatasetRequest,
    DatasetSplits,
    UserError,
    hookimpl,
    index_folders,
    report_corrupt,
    split_index,
    subfolders,
)

TEST_DIRS = ("val", "test")


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(".") or name.startswith("~") or Path(name).exists()


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
    classes = subfolders(class_root)
    if not classes:
        raise UserError(
            f"dataset folder '{class_root}' holds no class sub-folders. The ImageNet layout is "
            "<folder>/<class>/<image files>."
        )
    info: dict[str, Any] = {"root": str(root), "layout": "train/val" if has_split else "class folders"}
    folders = {name: label for label, name in enumerate(classes)}
    pool_index = index_folders(class_root, folders, cache_dir=request.cache_dir)
    if not len(pool_index.files) and not pool_index.bad:
        raise UserError(
            f"dataset folder '{class_root}' has class folders ({', '.join(classes[:5])}…) but no image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    bad = list(pool_index.bad)
    if has_split:
        test_root = next(split_dirs[d] for d in TEST_DIRS if d in split_dirs)
        test_index = index_folders(test_root, folders, cache_dir=request.cache_dir)
        bad += test_index.bad
        report_corrupt(bad, request.on_corrupt)
        fp = f"{pool_index.fingerprint}{test_index.fingerprint}"
        pool = pool_index.images(f"folder:{fp}/pool")
        test = test_index.images(f"folder:{fp}/test")
    else:
        report_corrupt(bad, request.on_corrupt)
        pool, test, info["split"] = split_index(pool_index, "folder", request.test_fraction, SPLIT_SEED)
    info["skipped"] = bad
    if not len(pool) or not len(test):
        raise UserError(f"dataset folder '{root}' has no readable images left in its pool or test split.")
    info.update(pool=len(pool), test=len(test))
    return DatasetSplits(name=str(root), pool=pool, test=test, classes=classes, info=info)


@hookimpl
def vecaf_bench_resolve_dataset(name: str) -> Any:
    return load_folder if _looks_like_path(name) else None
