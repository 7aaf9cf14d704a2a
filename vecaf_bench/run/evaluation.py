"""Stage 4: evaluation on the validation, test and OOD splits, and the curves it builds.

The validation split decides (targets, crossings, the step of the best model); the test split is
only reported, so that no number on the board was chosen by looking at the test set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from timm.utils import accuracy

from ..shifts import OODSplit
from ..train import evaluate
from ..transforms import Normalize


def ood_groups(ood: list[OODSplit]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for o in ood:
        if o.group:
            groups.setdefault(o.group, []).append(o.name)
    return groups


@torch.inference_mode()
def evaluate_head(
    head: torch.nn.Module, features: np.ndarray, labels: np.ndarray, device: torch.device, batch_size: int
) -> dict[str, float]:
    """`train.evaluate`'s figures (top-1/top-5 %, mean loss) of HEAD on pre-logit FEATURES."""
    was_training = head.training
    head.eval()
    n, correct1, correct5, loss_sum = 0, 0, 0, 0.0
    step = max(batch_size, 256)
    for start in range(0, len(labels), step):
        x = torch.as_tensor(np.array(features[start:start + step], dtype=np.float32), device=device)
        y = torch.as_tensor(labels[start:start + step], dtype=torch.int64, device=device)
        logits = head(x).float()
        a1, a5 = accuracy(logits, y, topk=(1, min(5, logits.shape[1])))
        b = len(y)
        correct1 += round(float(a1) * b / 100)
        correct5 += round(float(a5) * b / 100)
        loss_sum += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
        n += b
    head.train(was_training)
    return {"top1": 100.0 * correct1 / n, "top5": 100.0 * correct5 / n, "loss": loss_sum / n}


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
        val: Any = None,
        features_of: Callable[[Any], np.ndarray | None] | None = None,
        head_of: Callable[[], torch.nn.Module | None] | None = None,
        test_curve: bool = True,
    ) -> None:
        self.model, self.test, self.ood, self.val = model, test, ood, val
        # test_curve False: the test split is evaluated only where a test number is reported, the
        # final step and the best validation step; the weights at the best step wait in
        # `best_weights` (CPU copies) until the final step measures them
        self.test_curve = test_curve
        self.best_weights: dict[str, torch.Tensor] | None = None
        # a recipe that leaves the backbone frozen (linear probe, kNN) hands its head: the test and
        # validation splits are then evaluated on their cached pre-logit features, head(embed(x)),
        # which is the model's forward, in milliseconds instead of a forward over every image
        self.features_of, self.head_of = features_of, head_of
        self._features: dict[str, np.ndarray] = {}
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

    def restore(
        self,
        curve: list[dict[str, Any]],
        ood_curves: dict[str, list[dict[str, Any]]],
        best_weights: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.curve = list(curve)
        self.ood_curves.update({k: list(v) for k, v in ood_curves.items() if k in self.ood_curves})
        self.best_weights = best_weights

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint keeps of the evaluator (the best step's weights only while they wait)."""
        return {"curve": self.curve, "ood_curves": self.ood_curves, "best_weights": self.best_weights}

    def _head(self) -> torch.nn.Module | None:
        return self.head_of() if self.head_of is not None and self.features_of is not None else None

    def _test_now(self, step: int) -> bool:
        """Whether this evaluation measures the test split: always with a test curve, without a
        validation split (the test split then decides), on cached features (milliseconds), and at
        the final step."""
        return self.test_curve or self.val is None or self._head() is not None or step == self.final_step

    def _evaluate(self, source: Any, mask: torch.Tensor | None = None) -> dict[str, float]:
        head = self._head()
        if head is not None and mask is None:
            assert self.features_of is not None
            key = source.fingerprint
            if key not in self._features:
                feats = self.features_of(source)
                assert feats is not None  # one process: rank 0 holds them
                self._features[key] = feats
            return evaluate_head(head, self._features[key], np.asarray(source.labels), self.normalize.device,
                                 self.batch_size)
        return evaluate(self.model, source, self.transform, self.normalize, self.batch_size, self.num_workers, mask)

    def __call__(self, step: int, train_losses: list[float]) -> dict[str, Any]:
        """Evaluates after `step`; returns the metrics the `evaluate` hook receives (without top1,
        top5 and loss where the test split was not evaluated)."""
        point: dict[str, Any] = {"step": step}
        if self._test_now(step):
            m = self._evaluate(self.test)
            point.update(top1=m["top1"], top5=m["top5"], loss=m["loss"])
        if self.val is not None:
            v = self._evaluate(self.val)
            point.update(val_top1=v["top1"], val_top5=v["top5"], val_loss=v["loss"])
        if train_losses:
            point["train_loss"] = float(np.mean(train_losses))
        self.curve.append(point)
        best = self.best()
        if best is not None and best["step"] == step:  # a new best validation step
            self.best_weights = None if "top1" in point else {
                k: t.detach().to("cpu", copy=True) for k, t in self.model.state_dict().items()
            }
        if step == self.final_step and self.best_weights is not None:
            self._measure_best()
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

    def _measure_best(self) -> None:
        """The test split on the best validation step's weights, written into that step's point; the
        model then gets its final weights back (copied in place: its layout and the optimizer's
        references stay as they were)."""
        assert self.best_weights is not None
        best = self.best()
        assert best is not None
        final = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.best_weights)
        m = self._evaluate(self.test)
        self.model.load_state_dict(final)
        point = next(p for p in self.curve if p["step"] == best["step"])
        point.update(top1=m["top1"], top5=m["top5"], loss=m["loss"])
        self.best_weights = None

    def best(self) -> dict[str, Any] | None:
        """The evaluation with the best validation top-1 (the first of ties): its step, its val top-1
        and the test top-1 there, i.e. what early stopping on the validation split would report.
        None without a validation split."""
        points = [p for p in self.curve if p.get("val_top1") is not None]
        if not points:
            return None
        top = max(points, key=lambda p: p["val_top1"])  # max keeps the first of ties
        return {"step": top["step"], "val_top1": top["val_top1"], "test_top1": top.get("top1"),
                "test_top5": top.get("top5")}

    def images_evaluated(self) -> int:
        """Images passed through the model for the test and validation points of the curve."""
        n_val = len(self.val) if self.val is not None else 0
        return sum((len(self.test) if p.get("top1") is not None else 0)
                   + (n_val if p.get("val_top1") is not None else 0) for p in self.curve)

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
