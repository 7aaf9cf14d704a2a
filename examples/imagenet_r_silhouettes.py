"""Write a small ImageNet-R-layout folder of real renditions, for trying `--dataset imagenet-r`
on a machine without the 2 GB ImageNet-R archive.

ImageNet-R is renditions (art, cartoons, sketches, ...) of 200 ImageNet classes. The
`animal-mnist` package ships 10,000 animal silhouettes (28 x 28, 1,000 per animal); five of its
animals are ImageNet-R classes, so their silhouettes go into the WordNet-id folders ImageNet-R
uses:

    python -m pip install --no-deps animal-mnist     # it declares tensorflow, which is not needed
    python examples/imagenet_r_silhouettes.py DATA_ROOT
    vecaf-bench run --selector vecaf --dataset imagenet-r --data-root DATA_ROOT
"""

from __future__ import annotations

import argparse
import gzip
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

# animal-mnist label -> the ImageNet-R class (WordNet id) its silhouettes render
WNIDS = {
    0: "n02134084",  # bear -> polar bear
    1: "n01531178",  # bird -> goldfinch
    2: "n02123045",  # cat -> tabby cat
    4: "n02106662",  # dog -> German Shepherd Dog
    9: "n02391049",  # zebra -> zebra
}


def load_animal_mnist() -> tuple[np.ndarray, np.ndarray]:
    try:
        import animal_mnist
    except ImportError:
        raise SystemExit("animal-mnist is not installed: python -m pip install --no-deps animal-mnist") from None
    folder = Path(animal_mnist.__file__).parent / "data" / "Animal_MNIST"
    with gzip.open(folder / "animal_data_version_3.gz", "rb") as f:
        images = pickle.load(f)
    with gzip.open(folder / "animal_label_version_3.gz", "rb") as f:
        labels = pickle.load(f)
    return np.asarray(images, dtype=np.uint8), np.asarray(labels, dtype=np.int64)


def write(root: Path, per_class: int | None = None) -> int:
    images, labels = load_animal_mnist()
    out = root / "imagenet-r"
    written = 0
    for label, wnid in WNIDS.items():
        folder = out / wnid
        folder.mkdir(parents=True, exist_ok=True)
        for k, i in enumerate(np.flatnonzero(labels == label)[:per_class]):
            Image.fromarray(images[i]).convert("RGB").save(folder / f"silhouette_{k:04d}.png")
            written += 1
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_root", type=Path)
    ap.add_argument("--per-class", type=int, default=None, help="images per class (default: all 1,000)")
    args = ap.parse_args()
    n = write(args.data_root, args.per_class)
    print(f"wrote {n} images in {len(WNIDS)} ImageNet-R classes under {args.data_root / 'imagenet-r'}")


if __name__ == "__main__":
    main()
