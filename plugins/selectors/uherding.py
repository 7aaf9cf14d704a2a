"""uherding: Uncertainty Herding (Bae, Sutherland & Oliveira, ICLR 2025), MaxHerding weighted by
the current model's uncertainty.

Paper: W. Bae, D. J. Sutherland, G. L. Oliveira, "Uncertainty Herding: One Active Learning Method
for All Label Budgets", ICLR 2025 (arXiv 2412.20644); public code: github.com/BorealisAI/uherding
(deep-al/pycls/al/uherding.py).

Reads: the pool features (L2-normalised) for the kernel, and ``model`` (label-free):
``ctx.pool_outputs(what=("logits",))`` on the unselected reference points, the current model's
logits. Capabilities: ``uses={"model"}, cold_start="maxherding"``: round 0 (an untrained head)
is picked by maxherding, which is UHerding with uniform weights, as the public code does while
nothing is labelled; uherding then needs ``--rounds 2`` or more (and maxherding's plugin loaded).
Run in round 0 anyway (``trained_steps == 0``) it uses uniform weights without a forward pass.

Method: the greedy of maxherding.py on the uncertainty coverage

    UCov(S) = sum_i u_i max_{s in S} k(f_i, f_s),   gain(c) = sum_i u_i max(0, k(f_i, f_c) - m_i),

where u_i is the uncertainty of the temperature-scaled softmax p_i = softmax(z_i / T) of
reference point i: "margin" 1 - (p_i(1) - p_i(2)) (the paper's main variant), "entropy"
-sum_c p_ic log p_ic, or "confidence" 1 - p_i(1); u_i = 0 for the earlier picks (labelled:
already covered with k = 1). A candidate is wanted when it covers uncertain points well: the
weight sits on the covered points, not on the candidate (as in the public code). With a uniform
u the picks are maxherding's exactly (the shared code path multiplies by ones). When every u_i is
0 or not finite (one class, say) the weights fall back to uniform (stat ``uniform_weights``).
The kernel bandwidth defaults to the paper's adaptive radius: h = the smallest non-zero distance
between two earlier picks, sigma = h / sqrt(2) (maxherding's "paper" value without two picks).

Returns a `Selection` as maxherding (scores: the weighted gains at pick time), with the stats
``uncertainty_pool`` / ``uncertainty_picked`` (mean u over the unselected reference points and over
the picks that are reference points) and ``uniform_weights`` (1 when the weights were uniform).

Options (beside maxherding's sigma, candidates, reference and chunk; sigma defaults to "adaptive"):
    uncertainty: "margin" | "entropy" | "confidence" = "margin".
    temperature: float = 1.0 -- T of the softmax.

Cost: one forward pass over the unselected reference points (counted by the engine; none under a
frozen backbone, where the head is applied to cached features), O(N C) for the uncertainties, then
maxherding's cost. Memory O(N C) on the host for the logits.

Deviations from public code: the paper picks T by the expected calibration error of the labelled
set on a held-out split of it, which needs the picks' labels (a ``labels`` read of the whole
pool here): T is an option instead, 1 (no scaling) by default. The kernel is on the pretrained
pool features (the public code reads a self-supervised model's, SimCLR in its README); its option
to use the classifier's own embeddings is not offered. The public code draws a random candidate
subset (at most 35,000); here `candidates` does ("auto": every unselected sample up to 20,000, a
seeded 20,000 beyond; None: every one).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.maxherding import MaxHerding

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

UNCERTAINTIES = ("margin", "entropy", "confidence")


def uncertainty_of(logits: np.ndarray, kind: str, temperature: float) -> np.ndarray:
    """u_i of softmax(z_i / T), float64: margin 1 - (p1 - p2), entropy, or confidence 1 - p1."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    if kind == "entropy":
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    top = -np.partition(-p, 1, axis=1)[:, :2] if p.shape[1] > 1 else np.concatenate([p, 0 * p], axis=1)
    if kind == "confidence":
        return 1.0 - top[:, 0]
    return 1.0 - (top[:, 0] - top[:, 1])


class UHerding(MaxHerding):
    capabilities = Capabilities(uses={"model"}, cold_start="maxherding", randomized=False)
    name = "uherding"

    def __init__(
        self,
        uncertainty: str = "margin",
        temperature: float = 1.0,
        sigma: float | str = "adaptive",
        candidates: int | str | None = "auto",
        reference: int | str | None = "auto",
        chunk: int = 4096,
    ) -> None:
        if uncertainty not in UNCERTAINTIES:
            raise UserError(
                f"uherding uncertainty must be one of {', '.join(UNCERTAINTIES)}, got {uncertainty!r} "
                "(--set selector_options.uncertainty=margin)."
            )
        if not float(temperature) > 0 or not np.isfinite(float(temperature)):
            raise UserError(f"uherding temperature must be a positive number, got {temperature}.")
        super().__init__(sigma=sigma, candidates=candidates, reference=reference, chunk=chunk)
        self.uncertainty, self.temperature = uncertainty, float(temperature)

    def uncertainties(self, ctx: SelectionContext, rows: np.ndarray) -> np.ndarray:
        """u of the unselected reference `rows` (float64), from the current model's logits."""
        out = ctx.pool_outputs(indices=rows, what=("logits",))
        assert out.logits is not None
        return uncertainty_of(out.logits, self.uncertainty, self.temperature)

    def weights(
        self,
        ctx: SelectionContext,
        ref_rows: np.ndarray,
    ) -> tuple[torch.Tensor | None, dict[str, Any]]:
        import torch

        earlier = np.isin(ref_rows, np.asarray(ctx.selected, dtype=np.int64))
        rows = ref_rows[~earlier]
        if ctx.trained_steps == 0 or len(rows) == 0:  # an untrained head: uniform, as with nothing labelled
            return None, {"uniform_weights": 1}
        u = np.asarray(self.uncertainties(ctx, rows), dtype=np.float64)
        if not np.isfinite(u).all() or not (u > 0).any():
            return None, {"uniform_weights": 1}
        w = np.zeros(len(ref_rows), dtype=np.float64)
        w[~earlier] = np.maximum(u, 0.0)
        stats = {"uniform_weights": 0, "uncertainty_pool": float(u.mean())}
        return torch.as_tensor(w, device=ctx.device), stats

    def pick_stats(self, ref_rows: np.ndarray, w: torch.Tensor | None, picks: np.ndarray) -> dict[str, Any]:
        import torch

        if w is None:
            return {}
        at = np.searchsorted(ref_rows, picks).clip(0, len(ref_rows) - 1)
        inside = at[ref_rows[at] == picks]
        if not len(inside):
            return {}
        return {"uncertainty_picked": float(w[torch.as_tensor(inside, device=w.device)].mean())}


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"uherding": UHerding}
