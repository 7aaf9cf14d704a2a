"""Write the labelling workflow's two folders from real images: an unlabelled folder to choose
from, and the labelled copy of the same images to evaluate the choice on.

The `animal-mnist` package ships 10,000 animal silhouettes (28 x 28, 10 animals, 1,000 each).
Per animal, `--pool` of them go, under shuffled names and without their labels, into
`OUT/unlabelled/` (in sub-folders of 1,000, as photos sit in dated folders); the same files go
into `OUT/labelled/train/animal_<k>/`, and the rest into `OUT/labelled/val/animal_<k>/`, the test
split a team labels once to judge every selection by:

    python -m pip install --no-deps animal-mnist     # it declares tensorflow, which is not needed
    python examples/animal_folders.py demo
    vecaf-bench select --dataset demo/unlabelled --budget 100 --selector activeft --out picks.csv --preview picks.png
    vecaf-bench run --selection picks.csv --dataset demo/labelled --label-budget 100

`--mirror` adds every silhouette's mirror image too (twice the images; `--pool 1000 --mirror`: 20,000 for the
feature-throughput benchmark).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# the script beside this one reads the packaged silhouettes; run from examples/ or by path
from imagenet_r_silhouettes import load_animal_mnist
from PIL import Image, ImageOps


def write(out: Path, pool: int = 800, mirror: bool = False, seed: int = 0,
          images: np.ndarray | None = None, labels: np.ndarray | None = None) -> tuple[int, int]:
    """(pool images written, test images written). `images` (N, H, W) uint8 and `labels` default to
    the silhouettes; the README's test passes scikit-learn's digits through the same layout."""
    if images is None or labels is None:
        images, labels = load_animal_mnist()
    rng = np.random.default_rng(seed)
    chosen, held = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        chosen += list(idx[:pool])
        held += list(idx[pool:])
    order = rng.permutation(len(chosen))  # the unlabelled names say nothing of the class
    n_pool = n_test = 0
    for variant in (False, True) if mirror else (False,):
        for rank, j in enumerate(order):
            i = chosen[j]
            im = Image.fromarray(images[i]).convert("RGB")
            im = ImageOps.mirror(im) if variant else im
            name = f"img_{rank:05d}{'_m' if variant else ''}.png"
            part = out / "unlabelled" / f"part_{rank // 1000:02d}"
            part.mkdir(parents=True, exist_ok=True)
            im.save(part / name)
            cls = out / "labelled" / "train" / f"animal_{labels[i]}"
            cls.mkdir(parents=True, exist_ok=True)
            im.save(cls / name)
            n_pool += 1
        for rank, i in enumerate(held):
            im = Image.fromarray(images[i]).convert("RGB")
            im = ImageOps.mirror(im) if variant else im
            cls = out / "labelled" / "val" / f"animal_{labels[i]}"
            cls.mkdir(parents=True, exist_ok=True)
            im.save(cls / f"test_{rank:05d}{'_m' if variant else ''}.png")
            n_test += 1
    return n_pool, n_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--pool", type=int, default=800, help="images per animal in the pool (the rest: test split)")
    ap.add_argument("--mirror", action="store_true", help="add each image's mirror image (twice the images)")
    args = ap.parse_args()
    n_pool, n_test = write(args.out, args.pool, args.mirror)
    print(f"wrote {n_pool} unlabelled images under {args.out / 'unlabelled'}, the same with their labels under "
          f"{args.out / 'labelled' / 'train'}, and {n_test} test images under {args.out / 'labelled' / 'val'}")


if __name__ == "__main__":
    main()
