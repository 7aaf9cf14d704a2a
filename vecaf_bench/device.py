"""Device choice: the GPU when there is one, else the CPU; an explicit choice is checked."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    import torch


def resolve_device(spec: str = "auto") -> torch.device:
    import torch  # here, not at the top: commands that only check their inputs never import it

    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                f"--device {spec} was asked for, but this machine has no CUDA GPU that torch can use "
                f"(torch {torch.__version__}, built for CUDA {torch.version.cuda or 'none'}). "
                "Use --device cpu, or --device auto to take a GPU when there is one."
            )
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UserError(
                f"--device {spec}: there are only {torch.cuda.device_count()} CUDA device(s) "
                f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})."
            )
        return dev
    if spec == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise UserError("--device mps was asked for, but MPS is not available here. Use --device cpu or auto.")
        return torch.device("mps")
    if spec == "cpu":
        return torch.device("cpu")
    raise UserError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps.")
