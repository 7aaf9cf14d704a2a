"""The current model's outputs on pool images, for `SelectionContext.pool_outputs`.

One forward per batch gives both the penultimate embedding (`backbone.embed`) and the logits
(`backbone.classifier(model)` applied to it), under the eval transform, batched on the
selection device. The dataset's labels are never read: the loader's label column is dropped.
Monte-Carlo dropout draws T Bernoulli masks on the embedding before the classifier (the
last-layer MC dropout that BALD implementations for pretrained models use), from a generator
seeded by (run seed, round), so the same round gives the same draws.

While a recipe keeps the backbone frozen (linear-probe, knn, lp-ft's probe phase: it hands its
`feature_head`), the embedding of a pool image is its cached pool feature, so the outputs are the
head applied to those rows: no image passes the backbone, and none is counted.
"""

from __future__ import annotations

from collections.abc import Callable
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
    features: np.ndarray | None = None,
    head_of: Callable[[], torch.nn.Module | None] | None = None,
) -> OutputsProvider:
    def provide(idx: np.ndarray, what: frozenset[str], mc: int, p: float) -> tuple[dict[str, np.ndarray], int]:
        gen = torch.Generator(device=normalize.device)
        gen.manual_seed(int(seed) * 1_000_003 + int(round_index) + 104_729 * int(mc))
        head = head_of() if head_of is not None and features is not None else None
        if head is not None:
            assert features is not None
            return head_outputs(head, features, idx, normalize.device, batch_size, what, mc, p, gen), 0
        return pool_forward(
            model, backbone, source, idx, transform, normalize, batch_size, num_workers, what, mc, p, gen
        )

    return provide


@torch.inference_mode()
def head_outputs(
    head: torch.nn.Module,
    features: np.ndarray,
    indices: np.ndarray,
    device: torch.device,
    batch_size: int,
    what: frozenset[str],
    mc_dropout: int = 0,
    dropout: float = 0.5,
    generator: torch.Generator | None = None,
) -> dict[str, np.ndarray]:
    """pool_forward's outputs from the cached pre-logit FEATURES of INDICES (a frozen backbone)."""
    was_training = head.training
    head.eval()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "embeddings", "mc_probs")}
    step = max(batch_size, 256)
    try:
        for start in range(0, len(indices), step):
            emb = torch.as_tensor(np.asarray(features[indices[start:start + step]], dtype=np.float32), device=device)
            _collect(parts, emb, head, what, mc_dropout, dropout, generator)
    finally:
        head.train(was_training)
    return _joined(parts)


def _collect(
    parts: dict[str, list[np.ndarray]],
    emb: torch.Tensor,
    head: torch.nn.Module,
    what: frozenset[str],
    mc_dropout: int,
    dropout: float,
    generator: torch.Generator | None,
) -> None:
    """One batch's logits, embeddings and MC-dropout probabilities from its embeddings EMB."""
    if "logits" in what:
        parts["logits"].append(head(emb).float().cpu().numpy())
    if mc_dropout:
        draws = []
        for _ in range(mc_dropout):
            keep = torch.rand(emb.shape, generator=generator, device=emb.device) >= dropout
            dropped = emb * keep.to(emb.dtype) / (1.0 - dropout)
            draws.append(torch.softmax(head(dropped).float(), dim=1).cpu().numpy())
        parts["mc_probs"].append(np.stack(draws))
    if "embeddings" in what:
        parts["embeddings"].append(emb.float().cpu().numpy())


def _joined(parts: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate(chunks, axis=1 if name == "mc_probs" else 0).astype(np.float32)
            for name, chunks in parts.items() if chunks}


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
    was_training = model.training
    model.eval()
    loader = eval_loader(source, transform, indices, batch_size, num_workers, device)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("logits", "embeddings", "mc_probs")}
    batches = 0
    try:
        for images, _labels in loader:  # label-free: the labels are not looked at
            x = normalize(images)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                if head is not None:
                    _collect(parts, backbone.embed(model, x), head, what, mc_dropout, dropout, generator)
                else:  # a backbone without classifier(model): logits from the whole forward
                    if "logits" in what:
                        parts["logits"].append(model(x).float().cpu().numpy())
                    if "embeddings" in what:
                        parts["embeddings"].append(backbone.embed(model, x).float().cpu().numpy())
            batches += 1
    finally:
        model.train(was_training)
    return _joined(parts), batches
