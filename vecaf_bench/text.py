"""The text side: annotations (captions or class prompts) -> text embeddings, cached like features.

A text encoder (a plugin, registered through `vecaf_bench_add_text_encoders`) has `name`,
`fingerprint` (changes with its weights), `dim` and `encode(texts, batch_size, device)`, which
returns an (n, dim) float32 array of L2-normalised rows. It may also have `space`: the name of
the joint image-text space its embeddings live in (an open_clip model + weights); when the
backbone's image features live in the same space, selectors use the text embeddings as they are.

Annotations, per pool sample: its caption when a captions file is given (`load_captions`),
otherwise its class's prompt embedding: the average of the normalised embeddings of the class
name in every prompt template ("a photo of a {}."), re-normalised. A named target domain (an
OOD shift such as ImageNet-R's sketches) swaps the templates for domain-conditioned ones
(`domain_templates`). ImageNet's human-readable class names and prompt templates are
open_clip's (`open_clip.zero_shot_metadata`), imported, never copied.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .api.plugins import TextEncoder
from .api.records import TextFeatures
from .errors import PluginError, UserError, unknown
from .features import FeatureCache, cache_key

# a template is a format string with one `{}` (the class name) or a callable name -> prompt
# (open_clip's templates are lambdas)
Template = str | Callable[[str], str]

# the in-domain class prompt ("a photo of a {class}"), averaged over a few phrasings
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a good photo of a {}.",
)

# domain-conditioned prompts for text-domain augmentation (VeCAF's OOD mode), keyed by the
# target domain's name; ImageNet-R's renditions are among them. An unknown domain falls back
# to "a {domain} of a {}." (DOMAIN_FALLBACK).
DOMAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "sketch": (
        "a sketch of a {}.", "a drawing of a {}.", "a pencil sketch of a {}.", "a black and white sketch of a {}.",
    ),
    "painting": (
        "a painting of a {}.", "an oil painting of a {}.", "a watercolor painting of a {}.", "a painting of the {}.",
    ),
    "cartoon": ("a cartoon {}.", "a cartoon of a {}.", "a cartoon drawing of a {}.", "an animated {}."),
    "art": ("art of a {}.", "an artwork of a {}.", "a rendition of a {}.", "art of the {}."),
    "clipart": ("a clipart of a {}.", "a clip art image of a {}.", "an icon of a {}."),
    "photo": ("a photo of a {}.", "a real photo of a {}.", "a photo of the {}."),
    "graphic": ("a graphic of a {}.", "a digital illustration of a {}."),
    "origami": ("an origami {}.", "a paper folding of a {}."),
    "toy": ("a toy {}.", "a plastic {}.", "a plush {}."),
    "sculpture": ("a sculpture of a {}.", "a statue of a {}."),
    "embroidery": ("an embroidery of a {}.", "an embroidered {}."),
    "pattern": ("a pattern of a {}.", "a {} pattern.", "a textile pattern of a {}."),
    "graffiti": ("graffiti of a {}.", "a street art painting of a {}."),
    "tattoo": ("a tattoo of a {}.", "a tattoo of the {}."),
    "video game": ("a {} in a video game.", "a rendering of a {} in a video game."),
}
DOMAIN_ALIASES: dict[str, str] = {
    "sketches": "sketch", "drawing": "sketch", "paintings": "painting", "cartoons": "cartoon",
    "artwork": "art", "deviantart": "art", "real": "photo", "photos": "photo", "graphics": "graphic",
    "toys": "toy", "plastic objects": "toy", "plush objects": "toy", "sculptures": "sculpture",
    "tattoos": "tattoo", "videogame": "video game", "video games": "video game", "patterns": "pattern",
    "natural adversarial photo": "photo", "video game renditions": "video game",
}
DOMAIN_FALLBACK: tuple[str, ...] = ("a {domain} of a {{}}.", "a {domain} of the {{}}.")

# named template sets: open_clip's ImageNet ones for ImageNet-like class names
NAMED_TEMPLATES = ("default", "openai", "simple")

_WNID = re.compile(r"^n\d{8}$")


# -- templates and class names ---------------------------------------------------------------
def resolve_templates(templates: Sequence[Template] | str | None = None) -> list[Template]:
    """Templates as given, or a named set: `default` (DEFAULT_TEMPLATES), `openai` (open_clip's
    80 ImageNet templates) or `simple` (open_clip's 7 ImageNet templates)."""
    if templates is None or templates == "default":
        return list(DEFAULT_TEMPLATES)
    if isinstance(templates, str):
        from open_clip import zero_shot_metadata

        if templates == "openai":
            return list(zero_shot_metadata.OPENAI_IMAGENET_TEMPLATES)
        if templates == "simple":
            return list(zero_shot_metadata.SIMPLE_IMAGENET_TEMPLATES)
        raise unknown("template set", templates, NAMED_TEMPLATES, hint="Or pass a list of '... {} ...' strings.")
    out = list(templates)
    if not out:
        raise UserError("the prompt template list is empty; give at least one template such as 'a photo of a {}.'.")
    for t in out:
        if isinstance(t, str) and t.count("{}") != 1:
            raise UserError(f"prompt template '{t}' must hold the class name as exactly one '{{}}'.")
        if not isinstance(t, str) and not callable(t):
            raise UserError(f"prompt template {t!r} is neither a string nor a callable.")
    return out


def fill_template(template: Template, name: str) -> str:
    return template.replace("{}", name) if isinstance(template, str) else str(template(name))


def domain_templates(domain: str) -> list[str]:
    """Prompt templates for a named target domain ('sketch' -> 'a sketch of a {}.', ...)."""
    key = " ".join(str(domain).strip().lower().replace("_", " ").replace("-", " ").split())
    if not key:
        raise UserError("the text domain is empty; name the target domain (e.g. sketch, painting, cartoon).")
    key = DOMAIN_ALIASES.get(key, key)
    if key in DOMAIN_TEMPLATES:
        return list(DOMAIN_TEMPLATES[key])
    safe = key.replace("{", "").replace("}", "")
    return [t.format(domain=safe) for t in DOMAIN_FALLBACK]


def readable_class_names(classes: Sequence[str]) -> list[str]:
    """Names for prompts: ImageNet WordNet ids (n01440764) become open_clip's human-readable
    ImageNet names ('tench'); underscores become spaces ('golden_retriever')."""
    names = [str(c) for c in classes]
    if names and all(_WNID.match(n) for n in names):
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
        from timm.data import ImageNetInfo

        wnids = ImageNetInfo().label_names()  # the 1000 synsets in the order of IMAGENET_CLASSNAMES
        if len(wnids) == len(IMAGENET_CLASSNAMES):
            position = {w: i for i, w in enumerate(wnids)}
            names = [IMAGENET_CLASSNAMES[position[n]] if n in position else n for n in names]
    return [" ".join(n.replace("_", " ").split()) or n for n in names]


def class_prompts(classes: Sequence[str], templates: Sequence[Template] | str | None = None) -> list[list[str]]:
    """The prompt texts, per class: every template filled with the class name."""
    tmpl = resolve_templates(templates)
    return [[fill_template(t, name) for t in tmpl] for name in classes]


def average_prompts(embeddings: np.ndarray, per_class: int) -> np.ndarray:
    """(C * k, dim) prompt embeddings, k consecutive rows per class -> (C, dim): the mean of the
    normalised rows of each class, re-normalised."""
    e = _normalize(np.asarray(embeddings, dtype=np.float32))
    return _normalize(e.reshape(-1, per_class, e.shape[1]).mean(axis=1))


def class_embeddings(
    encoder: TextEncoder,
    classes: Sequence[str],
    templates: Sequence[Template] | str | None = None,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """(C, dim): each class's prompts embedded, averaged over the templates, re-normalised (uncached)."""
    prompts = class_prompts(classes, templates)
    flat = [p for group in prompts for p in group]
    return average_prompts(_encode(encoder, flat, batch_size, device), len(prompts[0]) if prompts else 1)


# -- captions --------------------------------------------------------------------------------
def load_captions(path: str | Path, n: int, paths: Sequence[str | Path] | None = None) -> list[str]:
    """One caption per pool sample, from a CSV (header: `index` or `path`, and `caption`) or a
    JSONL file (`{"index": i, "caption": c}` or `{"path": p, "caption": c}` per line).

    `index` is the sample's position in the dataset's pool (0..n-1, before the validation split is
    carved from it). `path` is the image file: absolute, or relative to any folder above it
    (`cat/001.jpg` matches `/data/train/cat/001.jpg`; it must match exactly one image).
    Every sample needs exactly one caption."""
    p = Path(path).expanduser()
    where = f"captions file '{p}'"
    if not p.is_file():
        raise UserError(f"{where} does not exist. Give a CSV (index or path, caption) or a JSONL file.")
    suffix = p.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise UserError(f"{where}: unknown format '{suffix or '(none)'}'; use a .csv or a .jsonl file.")
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{where} could not be read ({type(e).__name__}: {e}). Save it as UTF-8 text.") from None
    finder = _PathFinder(paths)
    out: list[str | None] = [None] * n
    first_line: dict[int, int] = {}

    def place(row: dict[str, Any], line: int) -> None:
        at = f"{where}, line {line}"
        caption = row.get("caption")
        if not isinstance(caption, str) or not caption.strip():
            raise UserError(f"{at}: the caption is missing or empty.")
        index, rel = row.get("index"), row.get("path")
        if index not in (None, ""):
            try:
                if isinstance(index, bool) or (isinstance(index, float) and not index.is_integer()):
                    raise ValueError
                i = int(str(index).strip()) if isinstance(index, str) else int(index)
            except (TypeError, ValueError):
                raise UserError(f"{at}: index {index!r} is not a whole number.") from None
            if not 0 <= i < n:
                raise UserError(f"{at}: index {i} is out of range; the pool has {n} samples (0..{n - 1}).")
        elif isinstance(rel, str) and rel.strip():
            i = finder.find(rel.strip(), at)
        else:
            raise UserError(f"{at}: the row needs an 'index' or a 'path'.")
        if i in first_line:
            raise UserError(
                f"{at}: sample {i} already has a caption (line {first_line[i]}); give one caption per sample."
            )
        first_line[i] = line
        out[i] = " ".join(caption.split())

    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in reader.fieldnames or []]
        reader.fieldnames = fields
        if "caption" not in fields or not ({"index", "path"} & set(fields)):
            raise UserError(
                f"{where}, line 1: the header must name 'caption' and 'index' or 'path' (found: "
                f"{', '.join(fields) if fields else 'nothing'})."
            )
        try:
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    raise UserError(
                        f"{where}, line {reader.line_num}: expected {len(fields)} columns ({', '.join(fields)}); "
                        "quote captions that contain commas."
                    )
                place(row, reader.line_num)
        except csv.Error as e:
            raise UserError(f"{where}, line {reader.line_num}: not valid CSV ({e}).") from None
    else:
        example = '{"index": 0, "caption": "..."}'
        for line_no, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{where}, line {line_no}: not valid JSON ({e.msg}).") from None
            if not isinstance(row, dict):
                raise UserError(f"{where}, line {line_no}: expected an object like {example}.")
            place(row, line_no)
    missing = [i for i, c in enumerate(out) if c is None]
    if missing:
        shown = ", ".join(finder.describe(i) for i in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise UserError(
            f"{where} has no caption for {len(missing)} of {n} pool samples ({shown}). Every sample needs one: "
            "add the missing rows, or unset the config key 'captions' (--set captions=none, or delete the "
            "'captions:' line of the config file) to use class-name prompts instead."
        )
    return [c for c in out if c is not None]


class _PathFinder:
    """Pool image paths by their last k components, built for each k a captions file uses."""

    _AMBIGUOUS = -1

    def __init__(self, paths: Sequence[str | Path] | None) -> None:
        self.paths = [Path(q) for q in paths] if paths is not None else None
        self._by_tail: dict[int, dict[tuple[str, ...], int]] = {}
        self._absolute: dict[str, int] | None = None

    def describe(self, i: int) -> str:
        return f"index {i}" + (f" '{self.paths[i]}'" if self.paths is not None else "")

    def find(self, rel: str, at: str) -> int:
        if self.paths is None:
            raise UserError(f"{at}: this dataset has no image files, so rows must give an 'index', not a 'path'.")
        q = Path(rel.replace("\\", "/"))
        if q.is_absolute():
            if self._absolute is None:
                self._absolute = {str(p.resolve()): i for i, p in enumerate(self.paths)}
            i = self._absolute.get(str(q.resolve()))
            if i is None:
                raise UserError(f"{at}: path '{rel}' is not an image of the pool.")
            return i
        parts = tuple(x for x in q.parts if x not in ("", "."))
        k = len(parts)
        if k not in self._by_tail:
            table: dict[tuple[str, ...], int] = {}
            for i, p in enumerate(self.paths):
                tail = p.parts[-k:]
                table[tail] = self._AMBIGUOUS if tail in table else i
            self._by_tail[k] = table
        i = self._by_tail[k].get(parts)
        if i is None:
            raise UserError(f"{at}: path '{rel}' is not an image of the pool.")
        if i == self._AMBIGUOUS:
            raise UserError(f"{at}: path '{rel}' matches more than one image of the pool; give more of its folders.")
        return i


# -- per-sample text features, cached ---------------------------------------------------------
def text_features(
    encoder: TextEncoder,
    *,
    classes: Sequence[str],
    labels: np.ndarray,
    cache_root: str | Path,
    captions: Sequence[str] | None = None,
    domain: str | None = None,
    templates: Sequence[Template] | str | None = None,
    image_space: str | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> TextFeatures:
    """Per-sample annotation embeddings and per-class prompt embeddings.

    per_sample[i]: the embedding of sample i's caption when `captions` are given, else its
    class's prompt embedding (`labels[i]`). per_class: the class prompts (domain-conditioned
    when `domain` names a target domain; else `templates`, default DEFAULT_TEMPLATES), averaged
    over templates. Both are cached in `cache_root`/features under a key of the encoder's
    fingerprint and the exact texts; a second call loads them without running the encoder.
    `image_space`: the backbone's joint space, if any; `shared_space` is True when it is the
    encoder's `space`."""
    start = time.perf_counter()
    labels = np.asarray(labels, dtype=np.int64)
    if len(classes) == 0:
        raise UserError("text features need class names, and the dataset has none.")
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise UserError(
            f"labels run from {labels.min()} to {labels.max()} but the dataset names {len(classes)} classes."
        )
    if captions is not None and len(captions) != len(labels):
        raise UserError(f"{len(captions)} captions for {len(labels)} pool samples; give one caption per sample.")
    cache = FeatureCache(cache_root)
    tmpl: list[Template] = list(domain_templates(domain)) if domain else resolve_templates(templates)
    prompts = class_prompts(readable_class_names(classes), tmpl)
    encoded = 0

    flat = [p for group in prompts for p in group]
    ckey = cache_key(kind="text-class-prompts", encoder=encoder.fingerprint, texts=_digest(flat), k=len(tmpl))
    per_class_mm = cache.load(ckey)
    if per_class_mm is None:

        def fill_classes(open_out: Callable[[int], np.ndarray]) -> None:
            open_out(encoder.dim)[:] = average_prompts(_encode(encoder, flat, batch_size, device), len(tmpl))

        per_class_mm = cache.store(
            ckey,
            {"kind": "text-class-prompts", "encoder": encoder.fingerprint, "n": len(classes),
             "templates": len(tmpl), "domain": domain, "example": flat[0]},
            fill_classes,
        )
        encoded += len(flat)
    per_class = np.array(per_class_mm, dtype=np.float32)

    if captions is not None:
        caps = [str(c) for c in captions]
        skey = cache_key(kind="text-captions", encoder=encoder.fingerprint, texts=_digest(caps))
        per_sample_mm = cache.load(skey)
        if per_sample_mm is None:

            def fill_captions(open_out: Callable[[int], np.ndarray]) -> None:
                out = open_out(encoder.dim)
                chunk = max(batch_size * 16, 1024)
                for s in range(0, len(caps), chunk):
                    part = caps[s : s + chunk]
                    unique = list(dict.fromkeys(part))
                    row = {t: j for j, t in enumerate(unique)}
                    emb = _encode(encoder, unique, batch_size, device)
                    out[s : s + len(part)] = emb[[row[t] for t in part]]

            per_sample_mm = cache.store(
                skey, {"kind": "text-captions", "encoder": encoder.fingerprint, "n": len(caps)}, fill_captions
            )
            encoded += len(caps)
        per_sample = np.array(per_sample_mm, dtype=np.float32)
    else:
        per_sample = per_class[labels]
    space = getattr(encoder, "space", None)
    result = TextFeatures(
        per_sample=per_sample,
        per_class=per_class,
        cached=encoded == 0,
        shared_space=bool(image_space) and image_space == space,
        encoder=encoder.fingerprint,
        source="captions" if captions is not None else "class prompts",
        encoded=encoded,
        seconds=time.perf_counter() - start,
    )
    if log is not None:
        what = f"{result.source} ({len(classes)} classes x {len(tmpl)} templates"
        what += f", {len(per_sample)} captions)" if captions is not None else ")"
        log(f"text: reused cache for {what}" if result.cached
            else f"text: encoded {encoded} texts for {what} in {result.seconds:.1f} s")
    return result


def _digest(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _normalize(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)).astype(np.float32)


def _encode(encoder: TextEncoder, texts: list[str], batch_size: int, device: torch.device | str) -> np.ndarray:
    """The encoder's embeddings, checked: a plugin that breaks the contract is named."""
    if not texts:
        return np.zeros((0, encoder.dim), dtype=np.float32)
    emb = np.asarray(encoder.encode(list(texts), batch_size, device), dtype=np.float32)
    if emb.shape != (len(texts), encoder.dim):
        raise PluginError(
            f"text encoder '{encoder.name}' returned an array of shape {emb.shape} for {len(texts)} texts; "
            f"expected ({len(texts)}, {encoder.dim})."
        )
    if not np.isfinite(emb).all():
        raise PluginError(f"text encoder '{encoder.name}' returned NaN or infinite embeddings.")
    return _normalize(emb)
