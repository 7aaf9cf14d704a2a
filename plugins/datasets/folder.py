"""Any folder in the ImageNet layout: `--dataset /path/to/folder`.

    folder/train/<class>/*.jpg  +  folder/val/<class>/*.jpg   (or test/)
    folder/train/<class>/*.jpg  alone (test_fraction of train/ is held out, and the console says so)
    folder/<class>/*.jpg        (no split: a stratified, seeded test split is made and stored)

train/, val/ and test/ are split folders, never class names; fewer than two classes is refused
(a one-class run would score 100% having learnt nothing).

The file list is built once (every file opened with PIL then, damaged ones recorded) and cached
by `vecaf_bench.datastore.index_folders`; damaged files are reported with their paths on every
load and skipped, or fatal with `--on-corrupt error`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from vecaf_bench.api import (
    IMAGE_SUFFIXES,
    SPLIT_SEED,
    DatasetRequest,
    DatasetSplits,
    UserError,
    did_you_mean,
    hookimpl,
    index_folders,
    report_corrupt,
    split_index,
    subfolders,
)

TEST_DIRS = ("val", "test")
SPLIT_DIRS = ("train", *TEST_DIRS)  # never class names


def _looks_like_path(name: str) -> bool:
    return "/" in name or "\\" in name or name.startswith(".") or name.startswith("~") or Path(name).exists()


def _note(text: str) -> None:
    print(f"note: {text}", file=sys.stderr)


def _layout(root: Path, names: list[str]) -> tuple[Path, Path | None]:
    """(the folder of class folders, the test folder or None): train/, val/ and test/ are split
    folders, never class names, whatever else sits beside them."""
    splits = [d for d in SPLIT_DIRS if d in names]
    others = [d for d in names if d not in SPLIT_DIRS]
    if not splits:
        return root, None
    if "train" not in splits:
        raise UserError(
            f"dataset folder '{root}' has {' and '.join(d + '/' for d in splits)} but no train/ beside it; "
            "train/, val/ and test/ are split folders, never class names. Put the pool images in "
            f"'{root / 'train'}/<class>/' (and the test images in '{root / 'val'}/<class>/'), or pass "
            f"--dataset '{root / splits[0]}' to split that one folder of class sub-folders."
        )
    test = next((d for d in TEST_DIRS if d in splits), None)
    if others:
        shown = ", ".join(others[:5]) + (" …" if len(others) > 5 else "")
        _note(
            f"dataset folder '{root}': reading train/{' and ' + test + '/' if test else ''} only; "
            f"the other sub-folders beside them ({shown}) are not read."
        )
    if test == "val" and "test" in splits:
        _note(f"dataset folder '{root}': val/ is the test split; test/ beside it is not read.")
    return root / "train", (root / test if test else None)


def _two_classes(where: Path, classes: list[str], labels: Any) -> None:
    """A run on one class trains nothing and scores 100%: refused, naming the folder."""
    if len(classes) == 1:
        only = classes[0]
        raise UserError(
            f"dataset folder '{where}' has one class sub-folder, '{only}'; a classification run needs at "
            f"least two classes. Add one sub-folder per class ('{where}/<class>/<images>'), or, if '{only}' "
            f"holds the class folders, pass --dataset '{where / only}'."
        )
    filled = sorted({int(x) for x in labels})
    if len(filled) == 1:
        empty = [c for i, c in enumerate(classes) if i not in filled]
        shown = ", ".join(empty[:5]) + (" …" if len(empty) > 5 else "")
        raise UserError(
            f"dataset folder '{where}' has readable images in only one class, '{classes[filled[0]]}' (none in "
            f"{shown}); a classification run needs at least two classes: add images to the other class folders."
        )


def _unreadable(where: Path, bad: list[str]) -> UserError:
    return UserError(
        f"dataset folder '{where}' has no readable images left: all {len(bad)} image file(s) there could not be "
        "decoded (listed above). Replace them with readable images."
    )


def _too_few(where: Path, root: Path, has_train: bool, n: int, k: int, fraction: float) -> UserError:
    beside = f"'{root / 'val'}/<class>/'" if has_train else f"'{root}/train/<class>/' and '{root}/val/<class>/'"
    return UserError(
        f"dataset folder '{where}' has too few images to hold out a test split: {n} readable image(s) in "
        f"{k} classes, at most one per class, and a class's only image stays in the pool, so "
        f"test_fraction={fraction} gives 0 test images. Add images (at least two per class), or give the "
        f"test images a folder of their own: {beside}."
    )


def load_folder(request: DatasetRequest) -> DatasetSplits:
    root = Path(request.name).expanduser()
    if not root.exists():
        raise UserError(
            f"dataset folder '{root}' does not exist. Give the path of a folder in the ImageNet layout "
            "(one sub-folder per class, or train/ and val/ folders of class sub-folders)."
        )
    if not root.is_dir():
        raise UserError(f"dataset '{root}' is a file, not a folder of class sub-folders.")
    class_root, test_root = _layout(root, subfolders(root))
    has_train = class_root != root
    classes = subfolders(class_root)
    if not classes:
        raise UserError(
            f"dataset folder '{class_root}' holds no class sub-folders. The ImageNet layout is "
            "<folder>/<class>/<image files> (or <folder>/train/<class>/… and <folder>/val/<class>/…)."
        )
    info: dict[str, Any] = {
        "root": str(root),
        "layout": "train/val" if test_root else ("train/ split" if has_train else "class folders"),
    }
    folders = {name: label for label, name in enumerate(classes)}
    pool_index = index_folders(class_root, folders, cache_dir=request.cache_dir)
    if not len(pool_index.files) and not pool_index.bad:
        raise UserError(
            f"dataset folder '{class_root}' has class folders ({', '.join(classes[:5])}…) but no image files "
            f"({', '.join(sorted(IMAGE_SUFFIXES))})."
        )
    if len(classes) == 1:
        _two_classes(class_root, classes, [])
    bad = list(pool_index.bad)
    if test_root is not None:
        test_classes = subfolders(test_root)
        extra = [c for c in test_classes if c not in folders]
        if extra:
            raise UserError(
                f"test folder '{test_root}' has class folders that '{class_root}' lacks: {', '.join(extra[:5])}"
                f"{' …' if len(extra) > 5 else ''}.{did_you_mean(extra[0], classes)} Every test class needs a "
                "training folder of the same name: rename or remove them."
            )
        test_index = index_folders(test_root, folders, cache_dir=request.cache_dir)
        bad += test_index.bad
        report_corrupt(bad, request.on_corrupt)
        fp = f"{pool_index.fingerprint}{test_index.fingerprint}"
        pool = pool_index.images(f"folder:{fp}/pool")
        test = test_index.images(f"folder:{fp}/test")
        if not len(test) and not test_index.bad:
            raise UserError(
                f"test folder '{test_root}' holds no image files in class sub-folders named as in "
                f"'{class_root}' ({', '.join(classes[:3])}{' …' if len(classes) > 3 else ''}); put the test "
                f"images in '{test_root}/<class>/', or remove '{test_root}' to hold out part of train/ instead."
            )
        if not len(pool) or not len(test):
            raise _unreadable(class_root, pool_index.bad) if not len(pool) else _unreadable(test_root, test_index.bad)
        _two_classes(class_root, classes, pool.labels)
    else:
        report_corrupt(bad, request.on_corrupt)
        if not len(pool_index.files):
            raise _unreadable(class_root, pool_index.bad)
        _two_classes(class_root, classes, pool_index.labels)
        fraction = request.test_fraction
        pool, test, info["split"] = split_index(pool_index, "folder", fraction, SPLIT_SEED)
        if has_train:
            _note(
                f"dataset folder '{root}': no val/ or test/ beside train/: holding out test_fraction={fraction} "
                f"of train/ as the test split ({len(test)} of {len(pool_index.files)} images, stratified, split "
                f"seed {SPLIT_SEED} for every run seed; --set test_fraction=... changes it)."
            )
        if len(pool_index.files) and not len(test):
            raise _too_few(
                class_root, root, has_train, len(pool_index.files), len(set(pool_index.labels.tolist())), fraction
            )
    info["skipped"] = bad
    info.update(pool=len(pool), test=len(test))
    return DatasetSplits(name=str(root), pool=pool, test=test, classes=classes, info=info)


@hookimpl
def vecaf_bench_resolve_dataset(name: str) -> Any:
    return load_folder if _looks_like_path(name) else None
