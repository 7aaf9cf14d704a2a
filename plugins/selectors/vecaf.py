"""vecaf: VeCAF (Zhang et al., ACM MM 2024) = ODS on CEA-augmented features, in rounds.

Reads (Capabilities uses): the pool features, the whole pool's labels, the current model's
logits on the pool (for the loss weights) and the annotation text embeddings.

CEA (text-augmented features). With t_i the text embedding of sample i's annotation (caption,
or class prompt; domain prompts for a named OOD target), mapped into the image space (identity
when image and text share a CLIP space, else a ridge map fitted on the pool):

    e_i = normalize( f_i - eta * alpha_i * (f_i - t_i) + sigma * noise )

alpha "attentive" (default): the softmax attention of f_i over all class text embeddings,
taken at its own class; "one": alpha = 1 (the released code). eta 0 turns CEA off (ODS alone:
the image features, no text read).

ODS (objective-aware selection): ActiveFT's parametric selector on e with per-sample weights
w_i from the current model's cross-entropy on the pool against the true labels (normalised to
mean 1). Round 0 has no trained head, so its weights are uniform; `loss_weights: false` makes
every round uniform (CEA + ActiveFT, no model read). weight_mode "outside" (default): the loss
is sum w_i J_i / sum w_i; "inside" (the released code): w_i multiplies e^{s_i/tau}. The runner
alternates rounds of selection with finetuning (run config `rounds`; `rounds: 1` is one shot,
and then the loss weights are never used) and counts the loss forward passes.

Options: eta (1.2), sigma (1e-3), alpha (attentive | one), alpha_temperature (0.07),
loss_weights (true), weight_mode (outside | inside), weight_transform (none | clip | sigmoid |
log1p), weight_clip (10), ridge (1e-2), ensemble (1), reselect (false), and every activeft
option (tau, lam, lr, iterations, init, pool_batch, chunk, topk, precision).

Ensemble (E > 1). Member m has its own seed, derived from (run seed, round, m): member 0 uses
the round's generator (so E = 1 is exactly the single selector), member m >= 1 a SeedSequence
of (seed, round, m) for its CEA noise and another for its centre init and its `pool_batch`
minibatches. Members are aligned by matching centres, not by a shared init: each member's
centres are matched one-to-one to member 0's by the Hungarian algorithm on cosine similarity
(scipy linear_sum_assignment, maximising the summed cosine), then the matched centres are
averaged and mapped, in member 0's order, onto member 0's augmented features. Why matching: with
the default whole-pool iterations (no `pool_batch`) the only randomness a member has is its
init and its 1e-3 noise, so a shared init would leave the ensemble a no-op again; matching keeps
independent inits and still averages like with like. The loss weights are computed once per
round and shared by every member (one pool forward pass per round whatever E), and so is the
noise-free part of CEA (the ridge map and alpha).

Round statistics (summary.json rounds[r].stats): alpha_mean, alpha_min; weights ("uniform
(untrained head)", "uniform (loss_weights false)" or "loss") with weight_min/max/std; the text
channel: text_source ("captions" | "class prompts"; "none (eta 0)"), text_map ("shared space" |
"ridge map fitted with labels"), prompt_to_class_mean_cos (+ _min): the cosine between each
class prompt as mapped into the image space and its class's mean image feature in the pool. A
value near 1 says CEA pulls every feature toward its class mean: without captions the ridge map,
fitted on per-sample text that is just the class prompt, sends each prompt onto its class mean
(>= 0.99999 measured on digits with MiniLM, as the issue reports for MNIST and CIFAR), so the
text channel carries the label and nothing more: a VeCAF number on such data is a label-using
stratification, not vision-language information (docs/vecaf.md; benchmarks/vecaf-ablation.yaml
separates CEA, the loss weights and the rounds). With E > 1: ensemble, ensemble_alignment,
ensemble_centre_cos (mean cosine of matched centre pairs, member m vs member 0, before
averaging), ensemble_centre_cos_same_index (the same before matching), ensemble_pick_overlap
(share of the ensemble's picks that member 0 alone would pick).

Cost per round: E x ActiveFT's fit (iterations x O(N B d)) + one mapping (two with E > 1, for
the overlap statistic); CEA once: ridge map O(N d_t^2 + N d_t d + d_t^3), attention O(N C d);
the matching O(E B^2 d) for the similarities plus the assignment, O(B^3) worst case (0.2-0.3 s
at B = 1,000 and 1.3-2 s at B = 3,000 on a 2-core CPU, about a minute at B = 12,811; memory
8 B^2 bytes); one forward pass over the pool in every round after round 0 with loss weights on,
counted as selection forward batches. Text embeddings are encoded once and cached by the runner.

Departures from the released code: alpha "attentive" by default (released: 1, `alpha: one`),
weight_mode "outside" by default (released: "inside"), an ensemble of independently seeded and
matched members (released: unaligned centres averaged, a crash for E = 1), the loss forward
passes counted, no finetuned checkpoint for round 0 (always unweighted).
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
#: the draws a member makes: its CEA noise, and its centre init + minibatches
_NOISE, _CENTRES = 0, 1


def ridge_map(text: torch.Tensor, image: torch.Tensor, ridge: float = 1e-2) -> torch.Tensor:
    """W (dt x d) minimising |T W - F|^2 + ridge |W|^2, closed form: maps text into image space."""
    import torch

    dt = text.shape[1]
    gram = text.T @ text + ridge * torch.eye(dt, device=text.device, dtype=text.dtype)
    return torch.linalg.solve(gram, text.T @ image)


def cea_shift(
    feats: torch.Tensor,
    text: torch.Tensor,
    class_text: torch.Tensor,
    labels: torch.Tensor,
    eta: float,
    alpha_mode: str,
    alpha_temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(f - eta * alpha * (f - t), alpha) before noise and normalisation: the deterministic part of CEA."""
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
    return f - eta * alpha[:, None] * (f - t), alpha


def cea_noise(e: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """normalize(e + sigma * noise), the noise drawn from `generator` (on the CPU, then moved)."""
    import torch
    import torch.nn.functional as F

    if sigma > 0:
        noise = torch.randn(e.shape, generator=generator, dtype=e.dtype).to(e.device)
        e = e + sigma * noise
    return F.normalize(e, dim=1)


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
    e, alpha = cea_shift(feats, text, class_text, labels, eta, alpha_mode, alpha_temperature)
    return cea_noise(e, sigma, generator), alpha


def prompt_to_class_mean_cos(feats: torch.Tensor, class_text: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Per class present in the pool: cos(class prompt as mapped into the image space, the mean
    of the class's L2-normalised image features). Near 1: CEA is a pull toward class means."""
    import torch
    import torch.nn.functional as F

    f = F.normalize(feats.float(), dim=1)
    k = class_text.shape[0]
    sums = torch.zeros(k, f.shape[1], device=f.device).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=k)[:k]
    present = counts > 0
    cos = F.cosine_similarity(class_text.float()[present], sums[present], dim=1)
    return cos.cpu().numpy().astype(np.float64)


def align_centres(reference: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """`centres` reordered so that row j is the one matched to reference row j (Hungarian on
    cosine similarity, maximising the sum); with the mean cosine of the matched pairs and of the
    pairs at the same index before matching. Both inputs are L2-normalised (B x d)."""
    from scipy.optimize import linear_sum_assignment

    sims = (reference @ centres.T).double().cpu().numpy()
    rows, cols = linear_sum_assignment(sims, maximize=True)
    order = np.empty(len(rows), dtype=np.int64)
    order[rows] = cols
    import torch

    aligned = centres[torch.as_tensor(order, device=centres.device)]
    return aligned, float(sims[rows, cols].mean()), float(np.diag(sims).mean())


def member_generator(ctx: SelectionContext, member: int, purpose: int) -> torch.Generator:
    """The generator of ensemble member `member` for one kind of draw: member 0 takes the
    round's own (`ctx.generator()`, as a single selector does); member m >= 1 a seed derived
    from (run seed, round, m, purpose) through numpy's SeedSequence."""
    import torch

    if member == 0:
        return ctx.generator()
    seq = np.random.SeedSequence([int(ctx.seed) % 2**64, int(ctx.round), int(member), int(purpose)])
    g = torch.Generator(device="cpu")
    g.manual_seed(int(seq.generate_state(1, np.uint64)[0] >> np.uint64(1)))
    return g


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


def _number(name: str, value: Any, ok: str) -> float:
    if isinstance(value, bool):
        raise UserError(f"vecaf {name} must be a number ({ok}), got {value!r}.")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"vecaf {name} must be a number ({ok}), got {value!r}.") from None


class VeCAF(ActiveFT):
    capabilities = Capabilities(uses={"labels", "model", "text"})

    def __init__(
        self,
        eta: float = 1.2,
        sigma: float = 1e-3,
        alpha: str = "attentive",
        alpha_temperature: float = 0.07,
        loss_weights: bool = True,
        weight_mode: str = "outside",
        weight_transform: str = "none",
        weight_clip: float = 10.0,
        ridge: float = 1e-2,
        ensemble: int = 1,
        reselect: bool = False,
        **activeft_options: Any,
    ) -> None:
        super().__init__(**activeft_options)
        integral = isinstance(ensemble, (int, np.integer)) or (isinstance(ensemble, float) and ensemble.is_integer())
        if isinstance(ensemble, bool) or not integral or int(ensemble) < 1:
            raise UserError(f"vecaf ensemble must be >= 1 (an integer: members averaged), got {ensemble!r}.")
        self.ensemble = int(ensemble)
        if not isinstance(loss_weights, (bool, np.bool_)):
            raise UserError(
                f"vecaf loss_weights must be true or false (false: uniform weights every round, CEA without "
                f"ODS's loss weights), got {loss_weights!r}."
            )
        if not isinstance(reselect, (bool, np.bool_)):
            raise UserError(f"vecaf reselect must be true or false, got {reselect!r}.")
        self.use_loss_weights = bool(loss_weights)
        # rounds: grow the selected set (default) or reselect the whole cumulative budget each round
        self.capabilities = Capabilities(uses={"labels", "model", "text"}, reselects=bool(reselect))
        if alpha not in ALPHA_MODES:
            raise UserError(f"vecaf alpha must be one of {', '.join(ALPHA_MODES)}, got '{alpha}'.")
        if weight_mode not in WEIGHT_MODES:
            raise UserError(f"vecaf weight_mode must be one of {', '.join(WEIGHT_MODES)}, got '{weight_mode}'.")
        if weight_transform not in WEIGHT_TRANSFORMS:
            raise UserError(
                f"vecaf weight_transform must be one of {', '.join(WEIGHT_TRANSFORMS)}, got '{weight_transform}'."
            )
        eta = _number("eta", eta, ">= 0; 0 turns CEA off: ODS alone")
        sigma = _number("sigma", sigma, ">= 0")
        alpha_temperature = _number("alpha_temperature", alpha_temperature, "> 0")
        weight_clip = _number("weight_clip", weight_clip, "> 0")
        ridge = _number("ridge", ridge, ">= 0")
        if eta < 0:
            raise UserError(f"vecaf eta must be >= 0 (0 turns CEA off: ODS alone), got {eta}.")
        if sigma < 0:
            raise UserError(f"vecaf sigma must be >= 0 (the CEA noise scale), got {sigma}.")
        if alpha_temperature <= 0:
            raise UserError(f"vecaf alpha_temperature must be > 0, got {alpha_temperature}.")
        if weight_clip <= 0:
            raise UserError(f"vecaf weight_clip must be > 0 (a multiple of the mean loss), got {weight_clip}.")
        if ridge < 0:
            raise UserError(f"vecaf ridge must be >= 0 (the text-to-image ridge penalty), got {ridge}.")
        self.eta, self.sigma, self.alpha_mode = eta, sigma, alpha
        self.alpha_temperature, self.weight_mode = alpha_temperature, weight_mode
        self.weight_transform, self.weight_clip, self.ridge = weight_transform, weight_clip, ridge
        self._stats: dict[str, Any] = {}
        self._round: dict[str, Any] | None = None  # what one select() computes once and shares

    # -- CEA --------------------------------------------------------------------------------------
    def _cea_base(self, ctx: SelectionContext) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(CEA before noise, or the normalised image features when eta = 0; alpha or None),
        computed once per select() and shared by the members; records the text channel."""
        if self._round is not None and "base" in self._round:
            return self._round["base"]
        import torch
        import torch.nn.functional as F

        feats = ctx.features_tensor()
        if self.eta == 0:
            self._stats.update(text_source="none (eta 0)", text_map="none (eta 0)")
            base: tuple[torch.Tensor, torch.Tensor | None] = (feats, None)
        else:
            if ctx.text is None or ctx.labels is None:
                raise UserError("vecaf needs text features and labels; the runner provides them (uses: labels, text).")
            text = torch.as_tensor(np.asarray(ctx.text.per_sample), dtype=torch.float32, device=feats.device)
            class_text = torch.as_tensor(np.asarray(ctx.text.per_class), dtype=torch.float32, device=feats.device)
            shared = bool(getattr(ctx.text, "shared_space", False))
            if not shared:
                w = ridge_map(F.normalize(text, dim=1), feats, self.ridge)
                text, class_text = F.normalize(text, dim=1) @ w, F.normalize(class_text, dim=1) @ w
            labels = torch.as_tensor(np.array(ctx.labels), dtype=torch.long, device=feats.device)
            cos = prompt_to_class_mean_cos(feats, class_text, labels)
            self._stats.update(
                text_source=str(getattr(ctx.text, "source", "class prompts")),
                text_map="shared space" if shared else "ridge map fitted with labels",
                prompt_to_class_mean_cos=float(cos.mean()) if len(cos) else None,
                prompt_to_class_mean_cos_min=float(cos.min()) if len(cos) else None,
            )
            e, alpha = cea_shift(feats, text, class_text, labels, self.eta, self.alpha_mode, self.alpha_temperature)
            self._stats.update(alpha_mean=float(alpha.mean()), alpha_min=float(alpha.min()))
            base = (e, alpha)
        if self._round is not None:
            self._round["base"] = base
        return base

    def member_features(self, ctx: SelectionContext, member: int) -> torch.Tensor:
        """Member `member`'s CEA features: the shared noise-free part plus its own noise."""
        e, alpha = self._cea_base(ctx)
        if alpha is None:  # eta 0: the image features, no noise (as ActiveFT)
            return e
        return cea_noise(e, self.sigma, member_generator(ctx, member, _NOISE))

    def features(self, ctx: SelectionContext) -> torch.Tensor:
        return self.member_features(ctx, 0)

    # -- ODS --------------------------------------------------------------------------------------
    def weights(self, ctx: SelectionContext) -> tuple[torch.Tensor | None, str]:
        """The per-sample loss weights, computed once per select() and shared by the members."""
        if self._round is not None and "weights" in self._round:
            return self._round["weights"]
        import torch

        out: tuple[torch.Tensor | None, str]
        if not self.use_loss_weights:
            self._stats.update(weights="uniform (loss_weights false)")
            out = (None, self.weight_mode)
        elif ctx.trained_steps == 0:
            self._stats.update(weights="uniform (untrained head)")
            out = (None, self.weight_mode)
        else:
            w = loss_weights(ctx.per_sample_loss(None), self.weight_transform, self.weight_clip)
            self._stats.update(
                weight_min=float(w.min()), weight_max=float(w.max()), weight_std=float(w.std()), weights="loss"
            )
            out = (torch.as_tensor(w, device=ctx.device), self.weight_mode)
        if self._round is not None:
            self._round["weights"] = out
        return out

    # -- the round --------------------------------------------------------------------------------
    def select(self, ctx: SelectionContext, count: int) -> Selection:
        import torch
        import torch.nn.functional as F

        self._stats = {}
        if count == 0:
            return Selection(np.zeros(0, dtype=np.int64), stats={})
        self._round = {}
        try:
            self.weights(ctx)  # once per round, before any member: every member reads the same
            first = self.member_features(ctx, 0)
            if self.ensemble == 1:
                theta = self.fit_centres(ctx, first, count)
                picks, self.fallbacks = map_centres_to_samples(first, theta, ctx.selected, self.topk, self.chunk)
                return Selection(picks, stats=dict(self._stats))
            thetas = [F.normalize(self.fit_centres(ctx, first, count), dim=1)]
            matched, same = [], []
            for member in range(1, self.ensemble):
                feats = self.member_features(ctx, member)
                gen = member_generator(ctx, member, _CENTRES)
                theta_m = F.normalize(self.fit_centres(ctx, feats, count, generator=gen), dim=1)
                del feats
                aligned, cos_matched, cos_same = align_centres(thetas[0], theta_m)
                thetas.append(aligned)
                matched.append(cos_matched)
                same.append(cos_same)
            theta = torch.stack(thetas).mean(0)
            picks, self.fallbacks = map_centres_to_samples(first, theta, ctx.selected, self.topk, self.chunk)
            alone, _ = map_centres_to_samples(first, thetas[0], ctx.selected, self.topk, self.chunk)
            self._stats.update(
                ensemble=self.ensemble,
                ensemble_alignment="hungarian on centre cosine, to member 0",
                ensemble_centre_cos=float(np.mean(matched)),
                ensemble_centre_cos_same_index=float(np.mean(same)),
                ensemble_pick_overlap=float(len(np.intersect1d(picks, alone)) / len(picks)),
            )
            return Selection(picks, stats=dict(self._stats))
        finally:
            self._round = None


@hookimpl
def vecaf_bench_add_selectors() -> Mapping[str, Any]:
    return {"vecaf": VeCAF}
