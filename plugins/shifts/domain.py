"""Another dataset as an OOD split: `--shift domain:DATASET` (`imagenet-r`, `imagenet-sketch`,
`imagenet-a`, `imagenet-v2`, any dataset name, or a folder path).

Which images: a dataset whose pool/test split was made by its loader (ImageNet-R, -Sketch, -A,
-V2, a folder of class folders: `"split"` in its info, or `official_split: False`) has no
official test split, so all its images (pool + test) are the OOD set; a dataset with a test split
of its own (train/ + val/) contributes that test split. Images are matched to the run's classes
by class key (WordNet ids for the ImageNet family): those of classes the run lacks are left out,
and the logit mask restricts predictions to the classes the dataset holds (ImageNet-R's 200).

The split is named after the dataset as given (`imagenet-r`) and has no group: each domain shift
is reported on its own line. Its target domains are the dataset's `domains` (ImageNet-R's 16
renditions, "sketch"), or its name when it names none; their prompt templates are what VeCAF's
text-domain augmentation reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vecaf_bench.api import (
    ConcatImages,
    DatasetSplits,
    ImageSource,
    OODSplit,
    ShiftRequest,
    UserError,
    align_classes,
    hookimpl,
)


def loader_made_split(other: DatasetSplits) -> bool:
    """True when the dataset has no official test split (its loader made one): then the whole
    dataset is foreign to the run and every image of it is used."""
    official = other.info.get("official_split")
    if official is not None:
        return not official
    return "split" in other.info or "split_seed" in other.info


def ood_images(other: DatasetSplits) -> tuple[ImageSource, str]:
    """The images of `other` that make its OOD split, and which ones they are ('all' or 'test')."""
    if loader_made_split(other):
        return ConcatImages([other.pool, other.test], f"{other.pool.fingerprint}+{other.test.fingerprint}"), "all"
    return other.test, "test"


def _domain_name(name: str, other: DatasetSplits) -> str:
    return Path(name).name if ("/" in name or "\\" in name) else (other.name or name)


def domain_shift(request: ShiftRequest) -> list[OODSplit]:
    """One OOD split: the named dataset, mapped onto the run's classes."""
    from vecaf_bench.api import domain_templates  # imports torch: not when the plugin is loaded

    name = request.spec.strip()
    if not name:
        raise UserError(
            "shift 'domain' needs a dataset: write domain:DATASET, e.g. --shift domain:imagenet-r "
            "or --shift domain:/data/my-sketches."
        )
    if request.load_dataset is None:
        raise UserError(f"shift 'domain:{name}' cannot load datasets here (the caller gave no dataset loader).")
    other = request.load_dataset(name)
    if other.pool.fingerprint == request.splits.pool.fingerprint:
        raise UserError(
            f"shift 'domain:{name}' names the run's own dataset; its images are not out of distribution. "
            "Name another dataset (e.g. imagenet-r for an ImageNet run)."
        )
    images, which = ood_images(other)
    aligned, mask = align_classes(images, other.classes, request.splits.classes, name)
    domains = list(dict.fromkeys(other.domains)) or [_domain_name(name, other)]
    templates = list(dict.fromkeys(t for d in domains for t in domain_templates(d)))
    return [
        OODSplit(
            name=name,
            images=aligned,
            mask=mask,
            group=None,
            domains=domains,
            templates=templates,
            info={
                "dataset": other.name,
                "images": which,
                "dataset_images": len(images),
                "left_out": len(images) - len(aligned),
                "dataset_classes": len(other.classes),
            },
        )
    ]


@hookimpl
def vecaf_bench_add_shifts() -> Mapping[str, Any]:
    return {"domain": domain_shift}
