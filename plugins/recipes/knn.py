"""knn: no training; after each selection round the head is a k-nearest-neighbour classifier over the labelled set.

What it does: at the start of each round's training the labelled set (the round's training set)
becomes the kNN memory: its cached pool features (the pretrained backbone's pre-logit embeddings
under the eval transform, the rows selectors see) and their labels. From then on the model's
forward replaces the head's logits with the kNN's (a forward hook on `backbone.classifier(model)`,
so the evaluator, OOD splits and model-using selectors all see the kNN head, and the model's
weights are never changed): each query's pre-logit embedding is L2-normalised and compared by
cosine similarity with the memory; its k most similar labelled images vote, each with weight
exp(similarity / temperature) (the weighted kNN of Wu et al. 2018, used by DINO's kNN
evaluation); the class scores are normalised to probabilities p and the logits are log(p)
(floored at log 1e-8, so the test loss stays finite). k is `k`, or the labelled set's size if
that is smaller. Before the first round (no labelled image yet) the head is the fresh linear one.

Budget: the batch budget's steps do no work but are counted as steps, so the run still ends at
`batch_budget` steps and evaluates every `eval_every` steps: the curve is flat between selection
rounds (it changes only when a new round enlarges the memory). `after_step` is called with loss
0.0 for every step (nothing is fitted), so `train_loss` on the curve is 0.0.

Cost: no training: `train_images` is 0 and `head_rows` 0. The memory is (labelled set x D) on the
device; a query batch costs one (batch x labelled set) similarity product (chunked by 65,536
memory rows).

Options: `k` (neighbours, default 20), `temperature` (of the vote weights, default 0.07):
`--set recipe_options.k=10`.

Under torchrun it refuses to start (the cached features live on rank 0 only); run it in one process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import RecipeRequest, UserError, hookimpl
from vecaf_bench_plugins.recipes.linear_probe import cached_features, head_of, positive, refuse_torchrun

if TYPE_CHECKING:
    import torch
    from torch import nn

CHUNK = 65_536  # memory rows per similarity block


class KNNHead:
    """A forward hook on the head: its logits replaced by the kNN's log-probabilities."""

    def __init__(self, k: int, temperature: float) -> None:
        self.k, self.temperature = k, temperature
        self.bank: torch.Tensor | None = None
        self.labels: torch.Tensor | None = None

    def set_memory(self, features: np.ndarray, labels: np.ndarray, device: Any) -> None:
        import torch

        bank = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).to(device)
        self.bank = torch.nn.functional.normalize(bank, dim=1)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)

    def __call__(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self.bank is None or self.labels is None:
            return None  # no labelled image yet: the fresh linear head
        import torch

        with torch.autocast(device_type=output.device.type, enabled=False):
            q = torch.nn.functional.normalize(args[0].detach().float(), dim=1).to(self.bank.device)
            k = min(self.k, len(self.bank))
            top_s = top_i = None
            for start in range(0, len(self.bank), CHUNK):
                sims = q @ self.bank[start : start + CHUNK].T
                s, i = sims.topk(min(k, sims.shape[1]), dim=1)
                i = i + start
                if top_s is not None and top_i is not None:
                    s, order = torch.cat([top_s, s], dim=1).topk(k, dim=1)
                    i = torch.cat([top_i, i], dim=1).gather(1, order)
                top_s, top_i = s, i
            assert top_s is not None and top_i is not None
            weights = torch.exp((top_s - 1.0) / self.temperature)  # shifted by the largest cosine: no overflow
            votes = torch.zeros(len(q), output.shape[-1], device=q.device)
            votes.scatter_add_(1, self.labels[top_i], weights)
            probs = votes / votes.sum(dim=1, keepdim=True)
            return torch.log(probs.clamp_min(1e-8)).to(output.device)


class KNN:
    """The `knn` recipe."""

    def __init__(self, request: RecipeRequest, k: int = 20, temperature: float = 0.07) -> None:
        from vecaf_bench.api import StepState

        if k < 1:
            raise UserError(f"recipe 'knn' option 'k' must be at least 1, got {k} (--set recipe_options.k=...).")
        positive("knn", "temperature", temperature)
        refuse_torchrun(request, "knn", "its memory is the labelled set's cached features")
        self.cfg = request.config
        self.model = request.model
        self.device = request.device
        self.features = cached_features(request, "knn")
        self.vote = KNNHead(int(k), float(temperature))
        self.head = head_of(request, "knn")
        self.hook = self.head.register_forward_hook(self.vote)
        self.state = StepState(global_step=0)
        self.memory = np.zeros(0, dtype=np.int64)
        self.memory_labels = np.zeros(0, dtype=np.int64)

    @property
    def step(self) -> int:
        return self.state.global_step

    @property
    def train_images(self) -> int:
        """Image-passes through the backbone for training: none."""
        return 0

    @property
    def head_rows(self) -> int:
        return 0

    def feature_head(self) -> nn.Module:
        """The head with the kNN hook: head(cached pre-logits) is the model's (kNN) forward."""
        return self.head

    def _remember(self, indices: np.ndarray, labels: np.ndarray) -> None:
        self.memory, self.memory_labels = indices, labels
        self.vote.set_memory(self.features[indices], labels, self.device)

    def train_round(
        self,
        round_index: int,
        training_set: np.ndarray,
        steps: int,
        first_step: int,
        pool: Any,
        transform: Any,
        normalize: Any,
        after_step: Callable[[int, float], None],
    ) -> None:
        indices = np.unique(np.asarray(training_set, dtype=np.int64))
        self._remember(indices, np.asarray(pool.labels)[indices].astype(np.int64))
        for _ in range(steps - (self.step - first_step)):
            self.state.global_step += 1
            after_step(self.state.global_step, 0.0)

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "global_step": self.step,
            "knn_memory": self.memory.tolist(),
            "knn_labels": self.memory_labels.tolist(),
        }

    def restore(self, ckpt: Mapping[str, Any]) -> None:
        from vecaf_bench.api import set_rng_state

        self.model.load_state_dict(ckpt["model"])
        self.state.global_step = int(ckpt["global_step"])
        memory = np.asarray(ckpt.get("knn_memory", []), dtype=np.int64)
        if len(memory):  # a selector reading the model before the next round sees the kNN head
            self._remember(memory, np.asarray(ckpt["knn_labels"], dtype=np.int64))
        if "rng" in ckpt:
            set_rng_state(ckpt["rng"])


@hookimpl
def vecaf_bench_add_recipes() -> Mapping[str, Any]:
    return {"knn": KNN}
