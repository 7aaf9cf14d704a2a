"""The current model's outputs on pool images, for `SelectionContext.pool_outputs`.

One forward per batch gives both the penultimate embedding (`backbone.embed`) and the logits
(`backbone.classifier(model)` applied to it), under the eval transform, batched on the
selection device. The dataset's labels are never read: the loader's label column is dropped.
Monte-Carlo dropout draws T Bernoulli masks on the embedding before the classifier (the
last-layer MC dropout that BALD implementations for pretrained models use), from a generator
seeded by (run seed, round), so the same round gives the same draws.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..api.selector import OutputsProvider
from ..data import ImageSource
from ..errors import PluginError
from ..transforms import Normalize, eval_loader


def outputs_provider(
    model: torch.nn.Module,
    backbone: Any,
    source: ImageSource,
    transform: Any,
    normalize: Normalize,
    batch_size: int,
    num_workers: int,
    seed: int,
    round_index: int,
) -> OutputsProvider:
    def provide(idx: np.ndarray, what: frozenset[str], mc: int, p: float) -> tuple[dict[str, np.ndarray], int]:
        gen = torch.Generator(device=normalize.device)
        gen.manual_seed(int(seed) * 1_000_003 + int(round_index) + 104_729 * int(mc))
        return pool_forward(
            model, backbone, source, idx, transform, normalize, batch_size, num_workers, what, mc, p, gen
        )

    return provide


@torch.inference_mode()
def pool_forward(
    model: torch.nn.Module,
    backbone: Any,
    source: ImageSource,
    indices: np.ndarray,
    transform: Any,
    normalize: Normalize,
    batch_size: int,
    num_workers: int,
    what: frozenset[str],
    mc_dropout: int = 0,
    dropout: float = 0.5,
    generator: torch.Generator | None = None,
) -> tuple[dict[str, np.ndarray], int]:
    """({"logits", "embeddings", "mc_probs"} as asked, forward batches)."""
    device = normalize.device
    classifier = getattr(backbone, "classifier", None)
    head = classifier(model) if callable(classifier) else None
    if mc_dropout and head is None:
        raise PluginError(
            f"backbone '{getattr(backbone, 'name', backbone)}' has no classifier(model) method, which MC dropout "
            "needs (the head applied to dropped-out embeddings). Add it to the backbone plugin."
        )
    want_emb = "embeddings" in what or bool(mc_dropout) or (head is not None and "logits" in what)
    was_training = model.training
    model.eval()
    loader = eval_loader(source, transform, indices, batch_size, num_workers, device)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "embeddings", "mc_probs")}
    batches = 0
    try:
        for images, _labels in loader:  # label-free: the labels are not looked at
            x = normalize(images)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                emb = backbone.embed(model, x) if want_emb else None
                if "logits" in what:
                    logits = head(emb) if head is not None else model(x)
                    parts["logits"].append(logits.float().cpu().numpy())
                if mc_dropout:
                    assert emb is not None and head is not None
                    draws = []
                    for _ in range(mc_dropout):
                        keep = torch.rand(emb.shape, generator=generator, device=emb.device) >= dropout
                        dropped = emb * keep.to(emb.dtype) / (1.0 - dropout)
                        draws.append(torch.softmax(head(dropped).float(), dim=1).cpu().numpy())
                    parts["mc_probs"].append(np.stack(draws))
            if "embeddings" in what and emb is not None:
                parts["embeddings"].append(emb.float().cpu().numpy())
            batches += 1
    finally:
        model.train(was_training)
    out: dict[str, np.ndarray] = {}
    for name, chunks in parts.items():
        if chunks:
            out[name] = np.concatenate(chunks, axis=1 if name == "mc_probs" else 0).astype(np.float32)
    return out, batches
