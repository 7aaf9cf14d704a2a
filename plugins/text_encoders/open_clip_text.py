"""open_clip: the text tower of any open_clip model (`text_encoder: open_clip:ViT-B-32@openai`).

`pretrained` is an open_clip tag (`openai`, `laion2b_s34b_b79k`, ...: weights from the Hugging
Face hub, or its local cache), the path of a local checkpoint, or None / `none` for random
weights (seeded, so the same on every run: for tests). Only the text tower is kept. With
`--backbone open_clip:<model>` and the same weights, image and text share one space
(`space`), and selectors use the text embeddings without a fitted map.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import UserError, hookimpl, unknown

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

RANDOM = ("", "none", "random")
RANDOM_SEED = 0


@contextmanager
def _quiet_logging() -> Iterator[None]:
    """open_clip logs its own warnings and errors on the root logger; ours replace them."""
    before = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        yield
    finally:
        logging.disable(before)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class OpenClipText:
    def __init__(
        self, model: str = "ViT-B-32", pretrained: str | None = "openai", cache_dir: str | None = None
    ) -> None:
        import open_clip
        import torch

        models = open_clip.list_models()
        if model not in models:
            raise unknown(
                "open_clip model", model, models,
                hint="List them with: python -c \"import open_clip; print(open_clip.list_models())\"",
            )
        self.model_name = model
        self.cache_dir = cache_dir
        self.name = f"open_clip:{model}"
        if pretrained is None or pretrained.strip().lower() in RANDOM:
            self.pretrained: str | None = None
            weights = f"random-seed{RANDOM_SEED}"
            self.fingerprint = f"open_clip:{model}:{weights}:{open_clip.__version__}:torch{torch.__version__}"
        elif Path(pretrained).expanduser().is_file():
            path = Path(pretrained).expanduser()
            self.pretrained = str(path)
            weights = f"file:{_file_digest(path)}"
            self.fingerprint = f"open_clip:{model}:{weights}"
        else:
            tags = open_clip.list_pretrained_tags_by_model(model)
            if pretrained not in tags:
                raise UserError(
                    f"open_clip model '{model}' has no pretrained weights '{pretrained}'; its tags: "
                    f"{', '.join(tags) if tags else '(none)'}. Or give a local checkpoint path, or 'none' for "
                    "random weights."
                )
            self.pretrained = pretrained
            weights = pretrained
            self.fingerprint = f"open_clip:{model}:{pretrained}:{open_clip.__version__}"
        # the joint image-text space: an open_clip image tower of the same model and weights shares it
        self.space = f"open_clip:{model}:{weights}"
        self.dim = int(open_clip.get_model_config(model)["embed_dim"])
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: torch.device | None = None

    def _load(self, device: torch.device) -> None:
        import open_clip
        import torch

        what = f"open_clip model '{self.model_name}'"
        try:
            with _quiet_logging(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(RANDOM_SEED)  # random weights: the same on every run
                model, _, _ = open_clip.create_model_and_transforms(
                    self.model_name, pretrained=self.pretrained, cache_dir=self.cache_dir
                )
        except Exception as e:
            if self.space.startswith(f"open_clip:{self.model_name}:file:"):
                raise UserError(
                    f"checkpoint '{self.pretrained}' does not load into {what} ({type(e).__name__}: {e})."
                ) from None
            raise UserError(
                f"could not load pretrained weights '{self.pretrained}' for {what} from the Hugging Face hub "
                f"({type(e).__name__}: {e}). Check the network (and HF_HUB_OFFLINE), give a local checkpoint "
                f"(text_encoder=open_clip:{self.model_name}@/path/to/weights), or use text_encoder=minilm."
            ) from None
        try:
            with _quiet_logging():
                self._tokenizer = open_clip.get_tokenizer(self.model_name, cache_dir=self.cache_dir)
        except Exception as e:
            raise UserError(
                f"could not load the tokenizer of {what} ({type(e).__name__}: {e}); it may need the Hugging Face "
                "hub. Check the network, or use text_encoder=minilm."
            ) from None
        if isinstance(getattr(model, "visual", None), torch.nn.Module):
            model.visual = None  # text tower only
        self._model = model.eval().to(device)
        self._device = device

    def encode(self, texts: list[str], batch_size: int = 256, device: torch.device | str = "cpu") -> np.ndarray:
        import torch
        import torch.nn.functional as F

        with torch.inference_mode():
            dev = torch.device(device)
            if self._model is None:
                self._load(dev)
            elif self._device != dev:
                self._model.to(dev)
                self._device = dev
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            bs = max(int(batch_size), 1)
            for s in range(0, len(texts), bs):
                tokens = self._tokenizer(list(texts[s : s + bs])).to(dev)
                emb = self._model.encode_text(tokens).float()
                out[s : s + len(emb)] = F.normalize(emb, dim=1).cpu().numpy()
            return out


@hookimpl
def vecaf_bench_add_text_encoders() -> Mapping[str, Any]:
    return {"open_clip": OpenClipText}
