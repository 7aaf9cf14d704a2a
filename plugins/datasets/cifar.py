"""CIFAR-10 and CIFAR-100 from the official python archives: `--dataset cifar10`, `cifar100`.

Under the data root, the unpacked folder (`cifar-10-batches-py/`, `cifar-100-python/`: the
layout torchvision also uses, so a torchvision root works as the data root) or the `.tar.gz`
itself (read without unpacking). Pool = the 50,000 training images, test = the 10,000 test
images; CIFAR-100 uses its 100 fine labels. Classes are the label names of the meta file.

No default image size: the backbone's own (224 px for most), as the ActiveFT and VeCAF papers
upsample CIFAR for their pretrained ViTs; `--image-size 32` trains at the native size.

The archives are Python pickles; they are read with an unpickler that builds only NumPy arrays
and plain containers, so a tampered archive cannot run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vecaf_bench.api import (
    ArrayImages,
    DatasetRequest,
    DatasetSplits,
    DataSource,
    NamedDataset,
    UserError,
    array_fingerprint,
    hookimpl,
)


@dataclass(frozen=True)
class CifarLayout:
    name: str
    folder: str  # the archive's top folder
    archive: str
    train: tuple[str, ...]
    test: str
    meta: str
    label_key: str
    names_key: str


LAYOUTS = {
    "cifar10": CifarLayout(
        "cifar10", "cifar-10-batches-py", "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta", "labels", "label_names",
    ),
    "cifar100": CifarLayout(
        "cifar100", "cifar-100-python", "cifar-100-python.tar.gz",
        ("train",), "test", "meta", "fine_labels", "fine_label_names",
    ),
}  # fmt: skip
HOMEPAGE = "https://www.cs.toronto.edu/~kriz/cifar.html"

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}  # fmt: skip


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR pickle")


def _unpickle(data: bytes, where: str) -> dict[str, Any]:
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except Exception as e:
        raise UserError(
            f"'{where}' is not a CIFAR python pickle ({type(e).__name__}: {e}). Prepare the official archive "
            f"again ({HOMEPAGE})."
        ) from None
    if not isinstance(obj, dict):
        raise UserError(f"'{where}' holds a {type(obj).__name__}, not the dict of a CIFAR batch.")
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in obj.items()}


def _read_members(path: Path, layout: CifarLayout) -> dict[str, tuple[bytes, str]]:
    """The raw pickles by file name (and where each came from), from the folder or the .tar.gz."""
    wanted = {*layout.train, layout.test, layout.meta}
    found: dict[str, tuple[bytes, str]] = {}
    if path.is_dir():
        for name in wanted:
            f = path / name
            if f.is_file():
                found[name] = (f.read_bytes(), str(f))
    else:
        try:
            with tarfile.open(path, mode="r|*") as tf:  # one pass over the stream
                for m in tf:
                    base = m.name.rsplit("/", 1)[-1]
                    if m.isfile() and base in wanted and base not in found:
                        fh = tf.extractfile(m)
                        if fh is not None:
                            found[base] = (fh.read(), f"{path}:{m.name}")
        except (tarfile.TarError, OSError, EOFError) as e:
            raise UserError(
                f"archive '{path}' could not be read ({type(e).__name__}: {e}): it is damaged or incomplete. "
                f"Download {layout.archive} again from {HOMEPAGE}."
            ) from None
    missing = sorted(wanted - set(found))
    if missing:
        raise UserError(
            f"'{path}' lacks {', '.join(missing)} of the official {layout.archive}. Download it again from "
            f"{HOMEPAGE} and run vecaf-bench data prepare {layout.name} --from {layout.archive}."
        )
    return found


def _batch(raw: tuple[bytes, str], layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(*raw)
    try:
        data = np.asarray(d["data"], dtype=np.uint8)
        labels = np.asarray(d[layout.label_key], dtype=np.int64)
        pixels = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # CHW rows -> HWC images
    except (KeyError, ValueError) as e:
        raise UserError(f"'{raw[1]}' is not a {layout.name} batch ({type(e).__name__}: {e}).") from None
    if len(pixels) != len(labels):
        raise UserError(f"'{raw[1]}' holds {len(pixels)} images but {len(labels)} labels.")
    return np.ascontiguousarray(pixels), labels


def _loader(layout: CifarLayout) -> Callable[[DatasetRequest, Path], DatasetSplits]:
    def load(request: DatasetRequest, path: Path) -> DatasetSplits:
        raw = _read_members(path, layout)
        meta = _unpickle(*raw[layout.meta])
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(layout.names_key, [])]
        parts = [_batch(raw[name], layout) for name in layout.train]
        train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        test_x, test_y = _batch(raw[layout.test], layout)
        if not classes or max(train_y.max(), test_y.max()) >= len(classes):
            raise UserError(f"'{path}': the meta file's {layout.names_key} do not cover the labels.")
        fp = array_fingerprint(train_x, train_y, test_x, test_y)
        return DatasetSplits(
            name=layout.name,
            pool=ArrayImages(train_x, train_y, f"{layout.name}:{fp}/pool"),
            test=ArrayImages(test_x, test_y, f"{layout.name}:{fp}/test"),
            classes=classes,
            class_names=[c.replace("_", " ") for c in classes],
            domains=["photo"],
            default_image_size=None,
            info={"root": str(path), "pool": len(train_y), "test": len(test_y), "source": layout.archive},
        )

    return load


def _check(layout: CifarLayout) -> Callable[[Path], str | None]:
    def check(path: Path) -> str | None:
        if path.is_dir():
            missing = [n for n in (*layout.train, layout.test, layout.meta) if not (path / n).is_file()]
            return f"lacks {', '.join(missing)}" if missing else None
        if path.is_file():
            return None if tarfile.is_tarfile(path) else "not a tar archive"
        return "missing"

    return check


def _source(layout: CifarLayout) -> DataSource:
    short = layout.name.replace("cifar", "cifar-")
    return DataSource(
        name=layout.name,
        folders=(
            layout.folder, f"{layout.name}/{layout.folder}", f"{short}/{layout.folder}",
            layout.archive, f"{layout.name}/{layout.archive}",
        ),
        check=_check(layout),
        homepage=HOMEPAGE,
        archives=(f"https://www.cs.toronto.edu/~kriz/{layout.archive}",),
        layout=f"the python version of {short.upper()} ({layout.archive}, or its {layout.folder}/ folder)",
        checksums=_official_md5s,
    )  # fmt: skip


def _official_md5s() -> dict[str, str]:
    """The official archives' MD5s as torchvision records them (read from it, never copied here)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    return {CIFAR10.filename: CIFAR10.tgz_md5, CIFAR100.filename: CIFAR100.tgz_md5}


@hookimpl
def vecaf_bench_add_datasets() -> Mapping[str, Any]:
    return {name: NamedDataset(_source(layout), _loader(layout)) for name, layout in LAYOUTS.items()}
