"""The text side: annotations (captions or class prompts) -> embeddings, cached like features.

A text encoder plugin has `name`, `fingerprint` (changes with its weights), `dim` and
`encode(texts, batch_size, device) -> (n, dim) float32, L2-normalised`. Prompt templates for
class names are open_clip's (`open_clip.zero_shot_metadata`); a named target domain (an OOD
shift) swaps them for domain-conditioned ones ("a sketch of a {}.").
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from .errors import UserError
from .features import FeatureCache, cache_key

Template = Callable[[str], str]

# domain-conditioned prompts for text-domain augmentation (VeCAF's OOD mode); unknown domains
# fall back to "a {domain} of a {class}."
DOMAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "sketch": ("a sketch of a {}.", "a pencil drawing of a {}.", "a black and white sketch of a {}."),
    "painting": ("a painting of a {}.", "an oil painting of a {}.", "a watercolor painting of a {}."),
    "cartoon": ("a cartoon {}.", "a cartoon drawing of a {}.", "an animated {}."),
    "art": ("art of a {}.", "an artwork of a {}.", "a drawing of a {}."),
    "origami": ("an origami {}.", "a paper folding of a {}."),
    "toy": ("a toy {}.", "a plastic toy {}.", "a plush {}."),
    "tattoo": ("a tattoo of a {}.",),
    "embroidery": ("an embroidery of a {}.", "an embroidered {}."),
    "graffiti": ("graffiti of a {}.", "a street art {}."),
    "video game": ("a {} in a video game.", "a rendering of a {} in a video game."),
    "sculpture": ("a sculpture of a {}.", "a statue of a {}."),
    "blurry": ("a blurry photo of a {}.", "an out of focus photo of a {}."),
    "noisy": ("a noisy photo of a {}.", "a grainy photo of a {}."),
    "dark": ("a dark photo of a {}.", "a low light photo of a {}."),
    "pixelated": ("a pixelated photo of a {}.", "a low resolution photo of a {}."),
}


class TextEncoder(Protocol):
    name: str
    fingerprint: str
    dim: int

    def encode(self, texts: Sequence[str], batch_size: int, device: torch.device) -> np.ndarray: ...


@dataclass
class TextFeatures:
    per_sample: np.ndarray  # (N, dt): each pool sample's annotation embedding
    per_class: np.ndarray  # (C, dt): each class's prompt embedding (for attentive alpha)
    cached: bool = False
    shared_space: bool = False  # True when the image features live in the same (CLIP) space


def default_templates() -> list[Template]:
    from open_clip.zero_shot_metadata import SIMPLE_IMAGENET_TEMPLATES

    return list(SIMPLE_IMAGENET_TEMPLATES)


def domain_templates(domain: str) -> list[Template]:
    key = domain.strip().lower()
    formats = DOMAIN_TEMPLATES.get(key, (f"a {key} of a {{}}.",))
    return [fmt.format for fmt in formats]


def class_prompts(classes: Sequence[str], templates: Sequence[Template]) -> list[list[str]]:
    return [[t(name) for t in templates] for name in classes]


def load_captions(path: str | Path, n: int, paths: Sequence[Path] | None = None) -> list[str]:
    """Captions per pool sample from a CSV (`index` or `path`, `caption`) or JSONL file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"captions file '{p}' does not exist. Give a CSV or JSONL of index/path -> caption.")
    by_path = {str(q): i for i, q in enumerate(paths)} if paths is not None else {}
    by_name = {Path(q).name: i for i, q in enumerate(paths)} if paths is not None else {}
    out: list[str | None] = [None] * n

    def place(row: dict[str, Any], line: int) -> None:
        caption = row.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise UserError(f"captions file '{p}', line {line}: no caption.")
        if row.get("index") not in (None, ""):
            try:
                i = int(row["index"])
            except (TypeError, ValueError):
                raise UserError(f"captions file '{p}', line {line}: index {row['index']!r} is not a number.") from None
            if not 0 <= i < n:
                raise UserError(f"captions file '{p}', line {line}: index {i} is outside the pool [0, {n}).")
        elif row.get("path"):
            key = str(row["path"])
            i = by_path.get(key, by_name.get(Path(key).name, -1))
            if i < 0:
                raise UserError(f"captions file '{p}', line {line}: path '{key}' is not an image of the pool.")
        else:
            raise UserError(f"captions file '{p}', line {line}: needs an 'index' or a 'path'.")
        out[i] = caption.strip()

    text = p.read_text()
    if p.suffix.lower() in (".jsonl", ".json"):
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"captions file '{p}', line {line_no}: not JSON ({e.msg}).") from None
            if not isinstance(row, dict):
                raise UserError(f"captions file '{p}', line {line_no}: expected an object.")
            place(row, line_no)
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames or "caption" not in reader.fieldnames:
            raise UserError(f"captions file '{p}' needs a header with 'caption' and 'index' or 'path'.")
        for line_no, row in enumerate(reader, 2):
            place(row, line_no)
    missing = [i for i, c in enumerate(out) if c is None]
    if missing:
        raise UserError(
            f"captions file '{p}' has no caption for {len(missing)} of {n} pool samples (e.g. index {missing[0]})."
        )
    return [c for c in out if c is not None]


def _encode_cached(
    encoder: TextEncoder, texts: list[str], cache: FeatureCache, batch_size: int, device: torch.device
) -> tuple[np.ndarray, bool]:
    digest = hashlib.sha256("\n".join(texts).encode()).hexdigest()
    key = cache_key(kind="text", encoder=encoder.fingerprint, texts=digest, n=len(texts))
    hit = cache.load(key)
    if hit is not None:
        return np.asarray(hit), True

    def fill(open_out: Callable[[int], np.ndarray]) -> None:
        emb = encoder.encode(texts, batch_size, device)
        open_out(emb.shape[1])[:] = emb

    out = cache.store(key, {"encoder": encoder.fingerprint, "n": len(texts)}, fill)
    return np.asarray(out), False


def text_features(
    encoder: TextEncoder,
    *,
    classes: Sequence[str],
    labels: np.ndarray,
    cache_root: str | Path,
    captions: Sequence[str] | None = None,
    domain: str | None = None,
    templates: Sequence[Template] | None = None,
    batch_size: int = 256,
    device: torch.device | None = None,
) -> TextFeatures:
    """Per-sample annotation embeddings (captions, else class prompts) and per-class prompts."""
    device = device or torch.device("cpu")
    cache = FeatureCache(cache_root)
    tmpl = list(templates) if templates is not None else (domain_templates(domain) if domain else default_templates())
    prompts = class_prompts(classes, tmpl)
    flat = [t for group in prompts for t in group]
    emb, hit_c = _encode_cached(encoder, flat, cache, batch_size, device)
    k = len(tmpl)
    per_class = emb.reshape(len(classes), k, -1).mean(1)
    per_class /= np.linalg.norm(per_class, axis=1, keepdims=True).clip(1e-12)
    per_class = per_class.astype(np.float32)
    if captions is not None:
        per_sample, hit_s = _encode_cached(encoder, list(captions), cache, batch_size, device)
    else:
        per_sample, hit_s = per_class[np.asarray(labels, dtype=np.int64)], True
    return TextFeatures(per_sample=per_sample, per_class=per_class, cached=hit_c and hit_s)
