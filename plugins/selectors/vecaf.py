"""vecaf: VeCAF (Zhang et al., ACM MM 2024) = ODS on CEA-augmented features, in rounds.

CEA (text-augmented features). With t_i the text embedding of sample i's annotation (caption,
or class prompt; domain prompts for a named OOD target), mapped into the image space (identity
when image and text share a CLIP space, else a ridge map fitted on the pool):

    e_i = normalize( f_i - eta * alpha_i * (f_i - t_i) + sigma * noise )

alpha "attentive" (default): the softmax attention of f_i over all class text embeddings,
taken at its own class; "one": alpha = 1 (the released code).

ODS (objective-aware selection): ActiveFT's parametric selector on e with per-sample weights
w_i from the current model's cross-entropy on the pool (normalised to mean 1). Round 0 has no
trained head, so its weights are uniform. weight_mode "outside" (default): the loss is
sum w_i J_i / sum w_i; "inside" (the released code): w_i multiplies e^{s_i/tau}. The runner
alternates rounds of selection with finetuning and counts the loss forward passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from vecaf_bench.api import Capabilities, Selection, SelectionContext, UserError, hookimpl
from vecaf_bench_plugins.selectors.activeft import ActiveFT, map_centres_to_samples

if TYPE_CHECKING:  # imported where it runs: listing plugins and argument errors need no torch
    import torch

ALPHA_MODES = ("attentive", "one")
WEIGHT_MODES = ("outside", "inside")
WEIGHT_TRANSFORMS = ("none", "clip", "sigmoid", "log1p")


def ridge_map(text: torch.Tensor, image: torch.Tensor, ridge: float = 1e-2) -> torch.Tensor:
    """W (dt x d) minimising |T W - F|^2 + ridge |W|^2, closed form: maps text into image space."""
    import torch

    dt = text.shape[1]
    gram = text.T @ text + ridge * torch.eye(dt, device=text.device, dtype=text.dtype)
    return torch.linalg.solve(gram, text.T @ image)


def cea_features(
    feats: torch.Tensor,
    text: torch.Tensor,
    class_text: torch.Tensor,
    labels: torch.Tensor,
    eta: float,
    sigma: float,
    alpha_mode: str,
    alpha_temperature: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(augmented features, alpha). `text`/`class_text` are already in the image space."""
    import torch
    import torch.nn.functional as F

    f = F.normalize(feats, dim=1)
    t = F.normalize(text, dim=1)
    if alpha_mode == "one":
        alpha = torch.ones(f.shape[0], device=f.device)
    else:
        ct = F.normalize(class_text, dim=1)
        att = torch.softmax((f @ ct.T) / alpha_temperature, dim=1)
        alpha = att.gather(1, labels[:, None]).squeeze(1)
    e = f - eta * alpha[:, None] * (f - t)
    if sigma > 0:
        noise = torch.randn(e.shape, generator=generator, dtype=e.dtype).to(e.device)
        e = e + sigma * noise
    return F.normalize(e, dim=1), alpha


def loss_weights(losses: np.ndarray, transform: str, clip: float) -> np.ndarray:
    w = np.asarray(losses, dtype=np.float64)
    if transform == "clip":
        w = np.minimum(w, clip * max(w.mean(), 1e-12))
    elif transform == "sigmoid":
        w = 1.0 / (1.0 + np.exp(-(w - w.mean()) / max(w.std(), 1e-12)))
    elif transform == "log1p":
        w = np.log1p(w)
    w = np.maximum(w, 1e-8)
    return (w / w.mean()).astype(np.float32)


class VeCAF(ActiveFT):
    capabilities = Capabilities(uses={"labels", "model", "text"})

    def __init__(
        self,
        eta: float = 1.2,
        sigma: float = 1e-3,
        alpha: str = "attentive",
        alpha_temperature: float = 0.07,
        weight_mode: str = "outside",
        weight_transform: str = "none",
        weight_clip: float = 10.0,
        ridge: float = 1e-2,
        ensemble: int = 1,
        reselect: bool = False,
        **activeft_options: Any,
    ) -> None:
        super().__init__(**activeft_options)
        if int(ensemble) < 1:
            raise UserError(f"vecaf ensemble must be >= 1, got {ensemble}.")
        self.ensemble = int(ensemble)
        # rounds: grow the selected set (default) or reselect the whole cumulative budget each round
        self.capabilities = Capabilities(uses={"labels", "model", "text"}, reselects=bool(reselect))
        self._member = 0
        if alpha not in ALPHA_MODES:
            raise UserError(f"vecaf alpha must be one of {', '.join(ALPHA_MODES)}, got '{alpha}'.")
        if weight_mode not in WEIGHT_MODES:
            raise UserError(f"vecaf weight_mode must be one of {', '.join(WEIGHT_MODES)}, got '{weight_mode}'.")
        if weight_transform not in WEIGHT_TRANSFORMS:
            raise UserError(
                f"vecaf weight_transform must be one of {', '.join(WEIGHT_TRANSFORMS)}, got '{weight_transform}'."
            )
        if eta < 0 or sigma < 0 or alpha_temperature <= 0:
            raise UserError("vecaf needs eta >= 0, sigma >= 0 and alpha_temperature > 0.")
        self.eta, self.sigma, self.alpha_mode = float(eta), float(sigma), alpha
        self.alpha_temperature, self.weight_mode = float(alpha_temperature), weight_mode
        self.weight_transform, self.weight_clip, self.ridge = weight_transform, float(weight_clip), float(ridge)
        self._stats: dict[str, Any] = {}

    def features(self, ctx: SelectionContext) -> torch.Tensor:
        import torch
        import torch.nn.functional as F

        feats = ctx.features_tensor()
        if self.eta == 0:
            return feats
        if ctx.text is None or ctx.labels is None:
            raise UserError("vecaf needs text features and labels; the runner provides them (uses: labels, text).")
        text = torch.as_tensor(np.asarray(ctx.text.per_sample), dtype=torch.float32, device=feats.device)
        class_text = torch.as_tensor(np.asarray(ctx.text.per_class), dtype=torch.float32, device=feats.device)
        if not getattr(ctx.text, "shared_space", False):
            w = ridge_map(F.normalize(text, dim=1), feats, self.ridge)
            text, class_text = F.normalize(text, dim=1) @ w, F.normalize(class_text, dim=1) @ w
        labels = torch.as_tensor(np.array(ctx.labels), dtype=torch.long, device=feats.device)
        gen = ctx.generator()
        if self._member:  # each ensemble member draws its own CEA noise
            gen.manual_seed(gen.initial_seed() + 7919 * self._member)
        aug, alpha = cea_features(
            feats, text, class_text, labels, self.eta, self.sigma, self.alpha_mode, self.alpha_temperature, gen
        )
        self._stats.update(alpha_mean=float(alpha.mean()), alpha_min=float(alpha.min()))
        return aug

    def weights(self, ctx: SelectionContext) -> tuple[torch.Tensor | None, str]:
        import torch

        if ctx.trained_steps == 0:
            self._stats.update(weights="uniform (untrained head)")
            return None, self.weight_mode
        w = loss_weights(ctx.per_sample_loss(None), self.weight_transform, self.weight_clip)
        self._stats.update(
            weight_min=float(w.min()), weight_max=float(w.max()), weight_std=float(w.std()), weights="loss"
        )
        return torch.as_tensor(w, device=ctx.device), self.weight_mode

    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch
        import torch.nn.functional as F

        self._stats = {}
        self._member = 0
        if self.ensemble == 1 or count == 0:
            return Selection(super().select(ctx, count), stats=dict(self._stats))
        # an ensemble averages centres only when they are aligned: every member starts from the
        # same initial samples (fit_centres draws them from the same per-round generator)
        thetas, first = [], None
        for member in range(self.ensemble):
            self._member = member
            feats = self.features(ctx)
            first = feats if first is None else first
            thetas.append(F.normalize(self.fit_centres(ctx, feats, count), dim=1))
        self._member = 0
        theta = torch.stack(thetas).mean(0)
        picks, self.fallbacks = map_centres_to_samples(first, theta, ctx.selected, self.topk, self.chunk)
        return Selection(picks, stats=dict(self._stats))


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"vecaf": VeCAF}
