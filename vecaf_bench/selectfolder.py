"""`vecaf-bench select --dataset DIR`: which images of an unlabelled folder to label.

The practitioner's question ("50,000 images, 500 labels: which 500?") on the benchmark's own
parts: the folder is listed and checked once (`datastore.index_folders`, corrupt files reported
or fatal by `--on-corrupt`), its features come through the run's resumable cache, any label-free
selector picks, and the picks leave as image paths relative to DIR (`picks.write_picks`). Class
folders are allowed and ignored, unless the selector reads labels: then the first folder level
is the class. An earlier round (`--selected`) is kept and grown; `--exclude` removes images from
the candidates; `--preview` draws the picks beside a random draw of the same size.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from .budget import resolve_label_budget
from .config import parse_set
from .data import FileImages
from .datastore import IMAGE_SUFFIXES, FileIndex, index_folders, report_corrupt
from .errors import UserError, check_folder_of
from .picks import Picks, format_for, match_paths, read_picks, write_picks
from .pluginmanager import PluginHost


@dataclass
class FolderPool:
    """An image folder as a selection pool: the images (lazily decoded), their paths relative to the
    folder, and class labels from the first folder level when a selector needs them."""

    root: Path
    images: FileImages
    paths: list[str]
    classes: list[str]


def load_image_folder(
    root: str | Path, *, cache_dir: str | None = None, on_corrupt: str = "skip", with_labels: bool = False,
    selector: str = "",
) -> FolderPool:
    """Every image under ROOT, at any depth, in path order."""
    root = Path(root).expanduser()
    if not root.exists():
        raise UserError(f"--dataset '{root}' does not exist. Give the folder that holds the images to choose from "
                        "(flat, nested, or one sub-folder per class).")
    if not root.is_dir():
        raise UserError(f"--dataset '{root}' is a file, not a folder of images.")
    index: FileIndex = index_folders(root, {"": 0}, cache_dir=cache_dir, what=str(root))
    if not len(index.files) and not index.bad:
        try:
            held = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        except OSError:
            held = []
        shown = ", ".join(held[:8]) + (" …" if len(held) > 8 else "") if held else "nothing"
        raise UserError(
            f"folder '{root}' holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))} at any depth; it "
            f"holds {shown}). Point --dataset at the folder of images."
        )
    report_corrupt(index.bad, on_corrupt)
    if not len(index.files):
        raise UserError(
            f"folder '{root}' has no readable image: all {len(index.bad)} image file(s) there could not be decoded "
            "(listed above). Replace them with readable images."
        )
    paths = [index.files.relative(i) for i in range(len(index.files))]
    classes: list[str] = []
    labels = np.zeros(len(paths), dtype=np.int64)
    if with_labels:
        loose = [p for p in paths if "/" not in p]
        if loose:
            raise UserError(
                f"selector '{selector}' reads labels, but {len(loose)} image(s) of '{root}' are not in a class "
                f"folder ({', '.join(loose[:3])}{' …' if len(loose) > 3 else ''}). Sort them into '{root}/<class>/', "
                "or choose a label-free selector."
            )
        top = [p.split("/", 1)[0] for p in paths]
        classes = sorted(set(top))
        where = {c: i for i, c in enumerate(classes)}
        labels = np.asarray([where[c] for c in top], dtype=np.int64)
    images = FileImages(index.files, labels, f"images:{index.fingerprint}{':labelled' if with_labels else ''}")
    return FolderPool(root, images, paths, classes)


def _label_free(host: PluginHost) -> list[str]:
    from .run.selection_round import declared_capabilities

    out = []
    for e in host.selectors().entries():
        caps = declared_capabilities(e)
        if caps is not None and not caps.uses & {"labels", "model", "text"} and not caps.whole_pool:
            out.append(e.name)
    return out


def _check_reads(host: PluginHost, name: str, uses: frozenset[str]) -> None:
    """A selector that needs a trained model or text cannot run on an unlabelled folder: named,
    with what to use instead."""
    missing = sorted(uses & {"model", "text"})
    if not missing:
        return
    why = {"model": "a model finetuned on labels (it ranks by the model's predictions)",
           "text": "text embeddings of each image's annotation (class names or captions)"}
    instead = ", ".join(_label_free(host)) or "random"
    raise UserError(
        f"selector '{name}' needs {' and '.join(why[m] for m in missing)}, which `select` on an image folder cannot "
        f"give. Use a label-free selector ({instead}), or label a first round and run "
        f"`vecaf-bench run --selector {name} --dataset LABELLED_FOLDER` to compare it."
    )


def _read_lists(files: Sequence[str], pool: FolderPool, flag: str, url_prefix: str | None) -> list[int]:
    """Pool positions of the images listed in FILES (picks files, a JSON list of paths), in order."""
    out: list[int] = []
    for f in files:
        picks = read_picks(f, url_prefix=url_prefix)
        if picks.indices is not None:
            raise UserError(
                f"{flag} '{f}' lists pool indices (a run's selected.json or a list of numbers); a folder's images "
                "are named by path. Give the picks file `vecaf-bench select` wrote (.csv, .jsonl, .json)."
            )
        out += match_paths([p.replace("\\", "/") for p in picks.paths], pool.paths, f"{flag} '{f}'")
    return out


def select_from_folder(
    *,
    dataset: str,
    budget: str,
    selector: str,
    out: str,
    backbone: str = "timm:tf_efficientnet_lite0",
    weights: str = "default",
    image_size: int | None = None,
    fmt: str | None = None,
    url_prefix: str | None = None,
    selected: Sequence[str] = (),
    exclude: Sequence[str] = (),
    preview: str | None = None,
    seed: int = 0,
    device: str = "auto",
    options: list[str] | None = None,
    plugins: list[str] | None = None,
    cache_dir: str | None = None,
    on_corrupt: str = "skip",
    batch_size: int = 64,
    num_workers: int = 0,
    console: Console | None = None,
) -> Picks:
    from .preview import check_preview_path

    console = console or Console(stderr=True, emoji=False)
    out_fmt = format_for(out, fmt)  # every output checked before any feature is computed
    check_folder_of(out, "--out")
    if preview is not None:
        check_preview_path(preview)
    host = PluginHost(plugins or [])
    slot_entry = host.selectors().get(selector)
    from .run.selection_round import make_selector, select_with_bar

    slot = make_selector(host, slot_entry.name, parse_set(options or []), flag="--set ")
    uses = slot.capabilities.uses
    _check_reads(host, selector, uses)
    if slot.capabilities.whole_pool:
        raise UserError(f"selector '{selector}' takes the whole pool; there is nothing to choose. Use a label-free "
                        f"selector ({', '.join(_label_free(host))}).")
    pool = load_image_folder(dataset, cache_dir=cache_dir, on_corrupt=on_corrupt, with_labels="labels" in uses,
                             selector=selector)
    n = len(pool.paths)
    earlier = _read_lists(selected, pool, "--selected", url_prefix)
    dropped = _read_lists(exclude, pool, "--exclude", url_prefix)
    if len(set(earlier)) != len(earlier):
        raise UserError(f"--selected lists {len(earlier) - len(set(earlier))} image(s) more than once; give each "
                        "earlier pick once (one file per round, each image in one of them).")
    both = sorted(set(earlier) & set(dropped))
    if both:
        raise UserError(
            f"{len(both)} image(s) are both in --selected and --exclude ({', '.join(pool.paths[i] for i in both[:3])}"
            f"{' …' if len(both) > 3 else ''}): an earlier pick cannot be excluded. Remove them from one of the files."
        )
    keep = np.setdiff1d(np.arange(n), np.asarray(dropped, dtype=np.int64))  # candidate rows, in pool order
    open_rows = len(keep) - len(earlier)
    try:
        count = resolve_label_budget(budget, open_rows)
    except UserError:
        count = -1
    if count < 0 or count > open_rows:
        parts = [f"{n:,} images in '{pool.root}'"]
        if dropped:
            parts.append(f"{len(set(dropped)):,} excluded")
        if earlier:
            parts.append(f"{len(earlier):,} picked earlier")
        raise UserError(
            f"--budget {budget} is more than the {open_rows:,} images left to choose from ({', '.join(parts)}). "
            f"Give at most {open_rows:,}, or a fraction such as 1%."
        )
    feats, feature_info, spec = folder_features(
        pool, backbone=backbone, weights=weights, image_size=image_size, device=device, cache_dir=cache_dir,
        batch_size=batch_size, num_workers=num_workers, host=host, console=console,
    )
    from .device import resolve_device

    position = np.full(n, -1, dtype=np.int64)
    position[keep] = np.arange(len(keep))
    sub = feats if len(keep) == n else np.asarray(feats[keep])
    result = select_with_bar(
        console, slot, count, features=sub, selected=position[np.asarray(earlier, dtype=np.int64)], seed=seed,
        device=resolve_device(device), labels=pool.images.labels[keep] if "labels" in uses else None,
        num_classes=len(pool.classes),
    )
    rows = keep[result.indices]
    scores: list[float | None] = [None] * len(rows) if result.scores is None else [float(s) for s in result.scores]
    picks = Picks(paths=[pool.paths[int(i)] for i in rows], scores=scores, selector=selector, backbone=spec, seed=seed)
    write_picks(out, picks, out_fmt, url_prefix)
    grown = f", after the {len(earlier):,} of --selected" if earlier else ""
    console.print(
        f"picked {count:,} of {n:,} images with {selector}{grown} (features {spec}: "
        f"{'reused' if feature_info.get('cached') else 'extracted'}; selection {result.seconds:.2f} s) -> {out} "
        f"({out_fmt})", highlight=False, soft_wrap=True,
    )
    if preview is not None:
        from .preview import write_preview

        candidates = np.setdiff1d(keep, np.asarray(earlier, dtype=np.int64))
        write_preview(preview, pool, rows, candidates, selector=selector, seed=seed)
        console.print(f"preview: {preview} (the picks by rank, and a random draw of the same size)", highlight=False)
    return picks


def folder_features(
    pool: FolderPool, *, backbone: str, weights: str, image_size: int | None, device: str, cache_dir: str | None,
    batch_size: int, num_workers: int, host: PluginHost, console: Console,
) -> tuple[np.ndarray, dict[str, Any], str]:
    """The folder's features through the run's cache (resumable, reused): (features, info, backbone spec)."""
    from .device import resolve_device
    from .run.features import pool_features
    from .run.rank import Rank
    from .run.setup import parse_backbone
    from .seeding import seed_everything
    from .transforms import Normalize, data_config_for, eval_transform

    prefix, name = parse_backbone(backbone)
    bb = host.backbones().get(prefix).factory(name, weights=weights)
    dev = resolve_device(device)
    seed_everything(0)
    model = bb.create_model(max(2, len(pool.classes)))  # the head is never used: features are pre-logits
    import torch

    model = model.to(dev, memory_format=torch.channels_last)
    dcfg = data_config_for(bb.data_config, image_size)
    normalize = Normalize(dcfg, dev, channels_last=True)
    t0 = time.perf_counter()
    feats, info = pool_features(
        backbone=bb, model=model, pool=pool.images, transform=eval_transform(dcfg), normalize=normalize,
        input_size=dcfg["input_size"], batch_size=batch_size, num_workers=num_workers, cache_dir=cache_dir,
        rank=Rank(), console=console,
    )
    info.setdefault("seconds", time.perf_counter() - t0)
    assert feats is not None
    return feats, info, f"{prefix}:{name}@{int(dcfg['input_size'][-1])}px"
