"""`select --preview picks.png`: the picks as a contact sheet, beside a random draw of the same size.

A person judging a selection wants to see it: are the picks varied, do they cover the kinds of
image in the folder, did the selector go for outliers (k-center's failure) or near-duplicates?
The random panel is the baseline the eye compares against. Thumbnails keep their aspect ratio on
a grey tile; each pick carries its rank. Large selections show their first `MAX_SHOWN` by rank
(the title says so), the random panel the same number.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .errors import UserError, check_folder_of

MAX_SHOWN = 100
THUMB = 96  # pixels per tile side
_PAD = 4


def check_preview_path(path: str | Path) -> None:
    p = Path(path)
    if p.suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        raise UserError(f"--preview '{p}' must end in .png, .jpg, .pdf or .svg (the figure's format).")
    check_folder_of(p, "--preview")


def _tile(image: Image.Image, label: str | None) -> Image.Image:
    im = image.convert("RGB")
    scale = THUMB / max(im.width, im.height)  # small images are enlarged too: a 32 px image is a speck
    im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))),
                   Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.BICUBIC)
    tile = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
    tile.paste(im, ((THUMB - im.width) // 2, (THUMB - im.height) // 2))
    if label:
        draw = ImageDraw.Draw(tile)
        w = 7 * len(label) + 4
        draw.rectangle([0, 0, w, 13], fill=(20, 20, 20))
        draw.text((2, 1), label, fill=(255, 255, 255))
    return tile


def contact_sheet(images: list[Image.Image], labels: list[str | None], cols: int) -> np.ndarray:
    """A grid of tiles (row-major), as an RGB array."""
    rows = max(1, math.ceil(len(images) / cols))
    sheet = Image.new("RGB", (cols * (THUMB + _PAD) + _PAD, rows * (THUMB + _PAD) + _PAD), (255, 255, 255))
    for k, (im, lab) in enumerate(zip(images, labels, strict=True)):
        r, c = divmod(k, cols)
        sheet.paste(_tile(im, lab), (_PAD + c * (THUMB + _PAD), _PAD + r * (THUMB + _PAD)))
    return np.asarray(sheet)


def write_preview(
    path: str | Path, pool: Any, picks: np.ndarray, candidates: np.ndarray, *, selector: str, seed: int
) -> Path:
    """The figure: POOL's images at PICKS (in rank order) and a seeded random draw of as many from
    CANDIDATES, side by side, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .results import atomic_path

    picks = np.asarray(picks, dtype=np.int64)
    shown = picks[:MAX_SHOWN]
    rng = np.random.default_rng(seed)
    draw = np.sort(rng.choice(np.asarray(candidates), size=min(len(shown), len(candidates)), replace=False))
    cols = max(1, min(10, math.ceil(math.sqrt(len(shown)))))
    left = contact_sheet([pool.images.image(int(i)) for i in shown], [str(k + 1) for k in range(len(shown))], cols)
    right = contact_sheet([pool.images.image(int(i)) for i in draw], [None] * len(draw), cols)
    scale = 1 / 80  # inches per pixel at 80 dpi
    fig, axes = plt.subplots(1, 2, figsize=(2 * left.shape[1] * scale + 0.6, left.shape[0] * scale + 0.9), dpi=80,
                             layout="constrained")  # room for the title above the panels' own
    more = f" (ranks 1-{len(shown)} of {len(picks)})" if len(picks) > len(shown) else ""
    titles = [f"{selector}: {len(picks)} picks{more}", f"random: {len(draw)} of the {len(candidates)} candidates "
              f"(seed {seed})"]
    for ax, sheet, title in zip(axes, [left, right], titles, strict=True):
        ax.imshow(sheet, interpolation="nearest")
        ax.set_title(title, fontsize=11, loc="left")
        ax.set_axis_off()
    fig.suptitle(f"{Path(str(pool.root)).name}: what {selector} chose, and what chance would", fontsize=13, x=0.01,
                 ha="left", fontweight="bold")
    p = Path(path)
    try:
        with atomic_path(p) as tmp:
            fig.savefig(tmp, format=p.suffix.lstrip(".").lower().replace("jpg", "jpeg"))
    finally:
        plt.close(fig)
    return p
