"""Stage 4: evaluation on the test split and the OOD splits, and the curves it builds."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..shifts import OODSplit
from ..train import evaluate
from ..transforms import Normalize


def ood_groups(ood: list[OODSplit]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for o in ood:
        if o.group:
            groups.setdefault(o.group, []).append(o.name)
    return groups


class Evaluator:
    """Evaluates the bare model (never the DDP wrapper) and keeps the test and OOD curves."""

    def __init__(
        self,
        model: torch.nn.Module,
        test: Any,
        ood: list[OODSplit],
        transform: Any,
        normalize: Normalize,
        batch_size: int,
        num_workers: int,
        ood_every: int,
        final_step: int,
    ) -> None:
        self.model, self.test, self.ood = model, test, ood
        self.transform, self.normalize = transform, normalize
        self.batch_size, self.num_workers = batch_size, num_workers
        self.ood_every, self.final_step = ood_every, final_step
        device = normalize.device
        self.masks = {
            o.name: (torch.as_tensor(o.mask, dtype=torch.bool, device=device) if o.mask is not None else None)
            for o in ood
        }
        self.curve: list[dict[str, Any]] = []
        self.ood_curves: dict[str, list[dict[str, Any]]] = {o.name: [] for o in ood}

    def restore(self, curve: list[dict[str, Any]], ood_curves: dict[str, list[dict[str, Any]]]) -> None:
        self.curve = list(curve)
        self.ood_curves.update({k: list(v) for k, v in ood_curves.items() if k in self.ood_curves})

    def _evaluate(self, source: Any, mask: torch.Tensor | None = None) -> dict[str, float]:
        return evaluate(self.model, source, self.transform, self.normalize, self.batch_size, self.num_workers, mask)

    def __call__(self, step: int, train_losses: list[float]) -> dict[str, Any]:
        """Evaluates after `step`; returns the metrics the `evaluate` hook receives."""
        m = self._evaluate(self.test)
        point: dict[str, Any] = {"step": step, "top1": m["top1"], "top5": m["top5"], "loss": m["loss"]}
        if train_losses:
            point["train_loss"] = float(np.mean(train_losses))
        self.curve.append(point)
        metrics: dict[str, Any] = dict(point)
        if self.ood and ((self.ood_every and step % self.ood_every == 0) or step == self.final_step):
            for o in self.ood:
                mo = self._evaluate(o.images, self.masks[o.name])
                self.ood_curves[o.name].append({"step": step, "top1": mo["top1"], "top5": mo["top5"]})
                metrics[f"ood/{o.name}/top1"] = mo["top1"]
                metrics[f"ood/{o.name}/top5"] = mo["top5"]
            for group, names in ood_groups(self.ood).items():
                metrics[f"ood/{group}/mean_top1"] = float(np.mean([self.ood_curves[n][-1]["top1"] for n in names]))
        return metrics

    def ood_summary(self) -> dict[str, Any]:
        """summary['ood']: split -> last top-1/top-5 and curve; summary['ood_groups']: group means."""
        splits: dict[str, Any] = {}
        for o in self.ood:
            c = self.ood_curves.get(o.name) or []
            splits[o.name] = {
                "top1": c[-1]["top1"] if c else None,
                "top5": c[-1]["top5"] if c else None,
                "curve": c,
                "size": len(o.images),
                "classes": int(o.mask.sum()) if o.mask is not None else None,
                "group": o.group,
                "domains": o.domains,
                **({"info": o.info} if o.info else {}),
            }
        groups = {}
        for g, names in ood_groups(self.ood).items():
            done = [splits[n] for n in names if splits[n]["top1"] is not None]
            groups[g] = {
                "top1": float(np.mean([x["top1"] for x in done])) if done else None,
                "top5": float(np.mean([x["top5"] for x in done])) if done else None,
                "splits": len(names),
            }
        return {"ood": splits, "ood_groups": groups}
