"""open_clip: the text tower of any open_clip model (`--set text_encoder=open_clip:ViT-B-32@openai`).

Weights come from the hub (`pretrained`); `pretrained=None` gives random weights (tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from vecaf_bench.errors import UserError, unknown
from vecaf_bench.hookspecs import hookimpl


class OpenClipText:
    def __init__(self, model: str = "ViT-B-32", pretrained: str | None = "openai") -> None:
        import open_clip

        if model not in open_clip.list_models():
            raise unknown("open_clip model", model, open_clip.list_models())
        self.model_name, self.pretrained = model, pretrained
        self.name = f"open_clip:{model}"
        self.fingerprint = f"open_clip:{model}:{pretrained or 'random'}:{open_clip.__version__}"
        self._model: Any = None
        self._tokenizer: Any = None
        self.dim = 0

    def _load(self, device: torch.device) -> None:
        import open_clip

        try:
            model, _, _ = open_clip.create_model_and_transforms(self.model_name, pretrained=self.pretrained)
        except Exception as e:
            raise UserError(
                f"open_clip weights '{self.pretrained}' for {self.model_name} could not be loaded "
                f"({type(e).__name__}: {e}). Check the network or use the text encoder minilm."
            ) from None
        self._model = model.eval().to(device)
        self._tokenizer = open_clip.get_tokenizer(self.model_name)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int, device: torch.device) -> np.ndarray:
        if self._model is None:
            self._load(device)
        out = []
        for s in range(0, len(texts), batch_size):
            tokens = self._tokenizer(list(texts[s : s + batch_size])).to(device)
            emb = self._model.encode_text(tokens).float()
            out.append(torch.nn.functional.normalize(emb, dim=1).cpu().numpy())
        arr = np.concatenate(out).astype(np.float32)
        self.dim = arr.shape[1]
        return arr


@hookimpl
def vecaf_bench_add_text_encoders() -> Mapping[str, Any]:
    return {"open_clip": OpenClipText}
