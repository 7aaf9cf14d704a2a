"""The text side of a run: annotation embeddings for text-using selectors, cached like features."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from rich.console import Console

from ..config import RunConfig, default_cache_dir
from ..data import DatasetSplits
from ..pluginmanager import PluginHost
from ..shifts import OODSplit
from .setup import parse_backbone


def text_features(
    cfg: RunConfig,
    host: PluginHost,
    splits: DatasetSplits,
    labels: np.ndarray,
    ood: list[OODSplit],
    device: torch.device,
    console: Console,
) -> Any:
    from ..text import load_captions
    from ..text import text_features as embed_texts

    domain, templates = cfg.text_domain, None
    if domain == "auto":  # the shifts' target domains, if they name any
        domain = None
        named = [o for o in ood if o.templates]
        if named:
            templates = list(dict.fromkeys(t for o in named for t in o.templates))
            domain = ", ".join(dict.fromkeys(d for o in named for d in o.domains)) or "shift"
    spec = cfg.text_encoder
    if spec == "auto":  # the backbone's own text tower when its family registers a text encoder
        prefix, _ = parse_backbone(cfg.backbone)
        spec = cfg.backbone if prefix in host.text_encoders() else "minilm"
    name, _, arg = spec.partition(":")
    entry = host.text_encoders().get(name)
    if arg:
        model, _, pretrained = arg.partition("@")
        encoder = entry.factory(model, pretrained or None) if pretrained else entry.factory(model)
    else:
        encoder = entry.factory()
    captions = None
    if cfg.captions:
        # captions name images of the dataset's own pool (by position or path), before the
        # validation split was carved from it
        base, positions = splits.carved_from or (splits.pool, None)
        captions = load_captions(cfg.captions, len(base), getattr(base, "paths", None))
        if positions is not None:
            captions = [captions[int(i)] for i in positions]
    console.print(
        f"text: {encoder.name} on {'captions' if captions else 'class prompts'}"
        + (f", domain '{domain}'" if domain else "")
    )
    return embed_texts(
        encoder,
        classes=splits.class_names or splits.classes,
        labels=labels,
        captions=captions,
        domain=None if templates else domain,
        templates=templates,
        cache_root=cfg.cache_dir or default_cache_dir(),
        device=device,
        log=console.print,
    )
