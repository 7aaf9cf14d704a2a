"""ImageNet-1k and its test sets under the data root: `--dataset imagenet`, `imagenet-r`,
`imagenet-sketch`, `imagenet-a`, `imagenet-v2`.

Classes are WordNet ids (wnids) in label order: that is how an OOD split of another ImageNet
dataset is matched to a run's classes (`vecaf_bench.shifts.align_classes`). ImageNet-R and -A
hold 200 of the 1000 classes; a run on them has a 200-way label space in their synset order, and
`imagenet_subset` gives their wnids and positions in ImageNet-1k. The synset lists come from
timm (`timm/data/_info`), the readable names from open_clip's zero-shot metadata.

ImageNet-1k: pool = train/, test = val/ (both one folder per wnid). The others have no split:
a stratified test split (`--set test_fraction=…`, split seed 0 whatever the run seed) is made
and recorded in the summary. ImageNet-V2 is a test set of 10 images per class; it is treated
the same way, so that it can also be finetuned on; as a domain shift of an ImageNet run every
image of it is foreign to the run anyway.
"""

from __future__ import annotations

import functools
import os
import pkgutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from vecaf_bench.api import (
    DatasetRequest,
    DatasetSplits,
    DataSource,
    FileIndex,
    NamedDataset,
    UserError,
    hookimpl,
    index_folders,
    report_corrupt,
    split_index,
    subfolders,
)

IMAGENET_R_DOMAINS = [
    "art", "cartoons", "deviantart", "embroidery", "graffiti", "graphics", "origami", "paintings", "patterns",
    "plastic objects", "plush objects", "sculptures", "sketches", "tattoos", "toys", "video games",
]  # fmt: skip
VALPREP = "https://raw.githubusercontent.com/soumith/imagenetloader.torch/master/valprep.sh"
_SUBSET_FILES = {"imagenet-r": "imagenet_r", "imagenet-a": "imagenet_a"}


# -- class maps ---------------------------------------------------------------------------------
@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """ImageNet-1k's 1000 wnids in label order (timm's, the order pretrained heads use)."""
    from timm.data import ImageNetInfo

    return tuple(ImageNetInfo().label_names())


def _timm_info_lines(filename: str) -> list[str]:
    data = pkgutil.get_data("timm.data", f"_info/{filename}")
    if data is None:
        raise UserError(f"timm's class list '{filename}' is missing; reinstall timm (pip install -U timm).")
    return [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]


@functools.cache
def imagenet_subset(name: str) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """(wnids, their indices into ImageNet-1k) of `imagenet-r` or `imagenet-a`, in the subset's
    label order, from timm's `_info` files; `imagenet` gives all 1000."""
    if name in ("imagenet", "imagenet-1k"):
        wnids = imagenet_wnids()
        return wnids, tuple(range(len(wnids)))
    if name not in _SUBSET_FILES:
        raise ValueError(f"no ImageNet subset '{name}'; known: imagenet, {', '.join(_SUBSET_FILES)}")
    stem = _SUBSET_FILES[name]
    wnids = tuple(_timm_info_lines(f"{stem}_synsets.txt"))
    indices = tuple(int(x) for x in _timm_info_lines(f"{stem}_indices.txt"))
    if len(wnids) != len(indices):
        raise UserError(f"timm's {stem} synsets and indices differ in length; reinstall timm.")
    return wnids, indices


def class_names(wnids: tuple[str, ...] | list[str]) -> list[str]:
    """open_clip's readable ImageNet names ('goldfish' for n01443537)."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    position = {w: i for i, w in enumerate(imagenet_wnids())}
    return [IMAGENET_CLASSNAMES[position[w]] for w in wnids]


# -- on-disk checks ---------------------------------------------------------------------------
def _wnid_folders_check(known: Callable[[], tuple[str, ...]]) -> Callable[[Path], str | None]:
    def check(path: Path) -> str | None:
        if not path.is_dir():
            return "not a folder"
        names = set(known())
        if not any(d in names for d in subfolders(path)):
            return "holds no WordNet-id class folders (n01443537/, …)"
        return None

    return check


def _v2_check(path: Path) -> str | None:
    if not path.is_dir():
        return "not a folder"
    if not any(d.isdigit() and int(d) < 1000 for d in subfolders(path)):
        return "holds no class-index folders (0/ … 999/)"
    return None


def _flat_images(path: Path) -> int:
    try:
        with os.scandir(path) as it:
            return sum(1 for e in it if e.is_file() and e.name.lower().endswith((".jpeg", ".jpg", ".png")))
    except OSError:
        return 0


def _imagenet_check(path: Path) -> str | None:
    if not path.is_dir():
        return "not a folder"
    wnids = set(imagenet_wnids())
    for split in ("train", "val"):
        d = path / split
        if not d.is_dir():
            return f"has no {split}/ folder"
        if not any(n in wnids for n in subfolders(d)):
            flat = _flat_images(d)
            if flat:
                return (
                    f"its {split}/ holds {flat} image files directly, not one folder per WordNet id: sort them "
                    f"into wnid folders (for the official val: {VALPREP}, run inside val/)"
                )
            return f"its {split}/ holds no WordNet-id class folders"
    return None


# -- loading ------------------------------------------------------------------------------------
def _folder_labels(root: Path, labels_of: Mapping[str, int], what: str, expect: str) -> dict[str, int]:
    """Class folder -> label; a folder that is no class of the dataset is refused (a wrong root)."""
    present = subfolders(root)
    unknown = [d for d in present if d not in labels_of]
    if unknown:
        raise UserError(
            f"'{root}' holds folder(s) that are no {what} class: {', '.join(unknown[:5])}"
            f"{' …' if len(unknown) > 5 else ''}. It should hold only {expect}; point --data-root at the right "
            "folder, or move the others away."
        )
    return {d: labels_of[d] for d in present}


def _splits(
    name: str,
    root: Path,
    classes: tuple[str, ...],
    pool_index: FileIndex,
    test_index: FileIndex | None,
    request: DatasetRequest,
    domains: list[str],
    info: dict[str, Any],
) -> DatasetSplits:
    bad = pool_index.bad + (test_index.bad if test_index else [])
    report_corrupt(bad, request.on_corrupt)
    if test_index is None:
        pool, test, info["split"] = split_index(pool_index, name, request.test_fraction)
    else:
        fp = f"{pool_index.fingerprint}{test_index.fingerprint}"
        pool, test = pool_index.images(f"{name}:{fp}/pool"), test_index.images(f"{name}:{fp}/test")
    if not len(pool) or not len(test):
        raise UserError(
            f"dataset '{name}' at '{root}' has no readable images in its pool or test split "
            f"({len(pool)} / {len(test)}). Check the folder, or prepare it again with vecaf-bench data prepare {name}."
        )
    present = len(set(pool.labels.tolist()) | set(test.labels.tolist()))
    info.update(root=str(root), pool=len(pool), test=len(test), classes_present=present, skipped=bad)
    return DatasetSplits(
        name=name,
        pool=pool,
        test=test,
        classes=list(classes),
        class_names=class_names(classes),
        domains=list(domains),
        info=info,
    )


def _class_folder_loader(name: str, domains: list[str]) -> Callable[[DatasetRequest, Path], DatasetSplits]:
    """ImageNet-R, -A, -Sketch: <root>/<wnid>/<images>, split made here."""

    def load(request: DatasetRequest, root: Path) -> DatasetSplits:
        wnids = imagenet_subset(name)[0] if name in _SUBSET_FILES else imagenet_wnids()
        label_of = {w: i for i, w in enumerate(wnids)}
        folders = _folder_labels(root, label_of, name, f"{len(wnids)} WordNet-id folders")
        index = index_folders(root, folders, cache_dir=request.cache_dir, what=name)
        return _splits(name, root, wnids, index, None, request, domains, {"layout": "wnid folders"})

    return load


def _load_v2(request: DatasetRequest, root: Path) -> DatasetSplits:
    wnids = imagenet_wnids()
    label_of = {str(i): i for i in range(len(wnids))}
    folders = _folder_labels(root, label_of, "imagenet-v2", "class-index folders 0 … 999")
    index = index_folders(root, folders, cache_dir=request.cache_dir, what="imagenet-v2")
    return _splits("imagenet-v2", root, wnids, index, None, request, ["photo"], {"layout": "class-index folders"})


def _load_imagenet(request: DatasetRequest, root: Path) -> DatasetSplits:
    wnids = imagenet_wnids()
    label_of = {w: i for i, w in enumerate(wnids)}
    expect = "the 1000 WordNet-id folders"
    train = index_folders(
        root / "train", _folder_labels(root / "train", label_of, "ImageNet", expect),
        cache_dir=request.cache_dir, what="imagenet train",
    )  # fmt: skip
    val = index_folders(
        root / "val", _folder_labels(root / "val", label_of, "ImageNet", expect),
        cache_dir=request.cache_dir, what="imagenet val",
    )  # fmt: skip
    return _splits("imagenet", root, wnids, train, val, request, ["photo"], {"layout": "train/val"})


# -- registration -------------------------------------------------------------------------------
def _r_wnids() -> tuple[str, ...]:
    return imagenet_subset("imagenet-r")[0]


def _a_wnids() -> tuple[str, ...]:
    return imagenet_subset("imagenet-a")[0]


def _ilsvrc_md5s() -> dict[str, str]:
    """ILSVRC2012's archive MD5s as torchvision records them (read from it, never copied here)."""
    from torchvision.datasets.imagenet import ARCHIVE_META

    return {f: md5 for f, md5 in ARCHIVE_META.values()}


SOURCES = {
    "imagenet": DataSource(
        name="imagenet",
        folders=(
            "imagenet",
            "imagenet-1k",
            "imagenet1k",
            "ILSVRC2012",
            "ILSVRC/Data/CLS-LOC",
            "imagenet/ILSVRC/Data/CLS-LOC",
        ),
        check=_imagenet_check,
        homepage="https://image-net.org/download.php",
        layout="ImageNet-1k (ILSVRC2012) as train/ and val/ folders, each with one sub-folder per WordNet id",
        note=(
            "The official ILSVRC2012_img_val.tar unpacks flat (50,000 JPEGs in one folder): sort it into "
            f"WordNet-id folders first, e.g. with valprep.sh ({VALPREP}, run inside val/); the train tar holds one "
            "tar per class, to unpack into train/<wnid>/. Then prepare the folder (--from DIR, or --from DIR --link "
            "to link it instead of copying 150 GB)."
        ),
        checksums=_ilsvrc_md5s,
    ),  # fmt: skip
    "imagenet-r": DataSource(
        name="imagenet-r",
        folders=("imagenet-r", "imagenet-r/imagenet-r", "imagenet_r", "ImageNet-R"),
        check=_wnid_folders_check(_r_wnids),
        homepage="https://github.com/hendrycks/imagenet-r",
        archives=("https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar",),
        layout="ImageNet-R: renditions of 200 ImageNet classes, one sub-folder per WordNet id",
    ),
    "imagenet-a": DataSource(
        name="imagenet-a",
        folders=("imagenet-a", "imagenet-a/imagenet-a", "imagenet_a", "ImageNet-A"),
        check=_wnid_folders_check(_a_wnids),
        homepage="https://github.com/hendrycks/natural-adv-examples",
        archives=("https://people.eecs.berkeley.edu/~hendrycks/imagenet-a.tar",),
        layout="ImageNet-A: natural adversarial photos of 200 ImageNet classes, one sub-folder per WordNet id",
    ),
    "imagenet-sketch": DataSource(
        name="imagenet-sketch",
        folders=("imagenet-sketch", "imagenet-sketch/sketch", "ImageNet-Sketch", "ImageNet-Sketch/sketch", "sketch"),
        check=_wnid_folders_check(imagenet_wnids),
        homepage="https://github.com/HaohanWang/ImageNet-Sketch",
        layout="ImageNet-Sketch: sketches of the 1000 ImageNet classes, one sub-folder per WordNet id "
        "(the ImageNet-Sketch.zip holds them in sketch/)",
    ),
    "imagenet-v2": DataSource(
        name="imagenet-v2",
        folders=(
            "imagenet-v2",
            "imagenetv2-matched-frequency-format-val",
            "imagenet-v2/imagenetv2-matched-frequency-format-val",
            "ImageNetV2-matched-frequency",
        ),
        check=_v2_check,
        homepage="https://github.com/modestyachts/ImageNetV2",
        layout="ImageNet-V2 (matched-frequency): 10,000 photos in folders named by ImageNet class index 0 … 999 "
        "(imagenetv2-matched-frequency.tar.gz holds them in imagenetv2-matched-frequency-format-val/)",
    ),  # fmt: skip
}

LOADERS: dict[str, Callable[[DatasetRequest, Path], DatasetSplits]] = {
    "imagenet": _load_imagenet,
    "imagenet-r": _class_folder_loader("imagenet-r", IMAGENET_R_DOMAINS),
    "imagenet-a": _class_folder_loader("imagenet-a", ["natural adversarial photo"]),
    "imagenet-sketch": _class_folder_loader("imagenet-sketch", ["sketch"]),
    "imagenet-v2": _load_v2,
}


@hookimpl
def vecaf_bench_add_datasets() -> Mapping[str, Any]:
    return {name: NamedDataset(SOURCES[name], LOADERS[name]) for name in SOURCES}
