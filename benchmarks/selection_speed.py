"""Selection speed and memory: `coreset`, `activeft` and the centre-to-sample mapping, each against a
plain reference written the obvious way, in the same run.

Measures (see benchmarks/README.md, "Selection speed and memory"), on synthetic clustered,
L2-normalised float32 features (seeded), for every N x d x B of the grid:

1. k-center: `KCenterGreedy().select(ctx, B)` against the textbook greedy loop (after each pick,
   `torch.cdist` of every point to the new centre, then min and argmax);
2. ActiveFT: `ActiveFT(iterations=I).select(ctx, B)` (init + I iterations of the chunked analytic
   gradient + the fast mapping) against the released code's way (dense N x B similarity, the loss
   by `reference_loss`, autograd, Adam) followed by the naive mapping; also the time of one
   `loss_and_grad` call (fp32, and bf16 / tf32 where they apply) and of one reference iteration;
3. the mapping alone: `map_centres_to_samples` against `map_centres_naive` (argsort per centre),
   both on the centres ActiveFT fitted;
4. checks: k-center picks equal to the reference's, the fast mapping equal to the naive one, and
   the ActiveFT loss history equal to the autograd reference's (float tolerance).

Every measured case runs in a fresh subprocess (clean peaks; `/proc/self/clear_refs` resets the
RSS high-water mark after the warm-up probe). Peak memory: on CUDA `torch.cuda.max_memory_allocated`
above what was allocated before; on the CPU the rise of the process's VmHWM above its VmRSS before.
Both sides start from the pool array (`ctx.features`) and make their normalised tensor with
`ctx.features_tensor()`, so that copy is in both peaks.

A measurement whose estimate (from a short probe) exceeds `--cap` seconds runs only as many
iterations / picks / centres as fit and is extrapolated linearly (each result says so); if even one
full-pool ActiveFT iteration is over the cap, the iteration is timed on the first rows of the pool
and scaled by N / rows. The CPU target case (N=100,000, d=384, B=1%, I=300) runs in full, ours
and reference. References over `--max-reference-n` or over the free memory are skipped with
their memory estimate. The projected H100 cost (FLOP and byte counts, with rates from
/work/shared/spec/gpu-anchors.md) is written beside the measurements.

    python benchmarks/selection_speed.py [--n 10000 100000] [--d 384 768] [--budget 0.01 0.05]
        [--iterations 300] [--device auto] [--repeats 1] [--cap 10] [--max-reference-n 200000]
        [--probe 1281167:768:0.01] [--merge] [--out benchmarks/results]
    python benchmarks/selection_speed.py --quick     # a one-minute smoke run
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

from vecaf_bench.api import SelectionContext  # noqa: E402
from vecaf_bench.device import resolve_device  # noqa: E402
from vecaf_bench_plugins.selectors.activeft import (  # noqa: E402
    ActiveFT,
    loss_and_grad,
    map_centres_naive,
    map_centres_to_samples,
    reference_loss,
)
from vecaf_bench_plugins.selectors.coreset import KCenterGreedy  # noqa: E402

TAU, LAM, LR, CHUNK, TOPK = 0.07, 1.0, 1e-3, 65536, 32  # ActiveFT's defaults
CPU_TARGET = {"n": 100_000, "d": 384, "budget": 0.01, "iterations": 300, "seconds": 300.0}
GPU_TARGET = {
    "n": 1_281_167,
    "d": 768,
    "count": 12_811,
    "activeft_seconds": 30.0,
    "activeft_extra_gb": 16.0,
    "mapping_seconds": 1.0,
    "kcenter_seconds": 15.0,
}
FULL_CASE_OTHER_CAP = 60.0  # in the full (target) case, k-center and the naive mapping may still extrapolate

# H100 (SXM, 80 GB) rates for the projection. Measured on one H100 (gpu-anchors.md): a bf16 matmul
# of the full pool against B padded to x128 ran at 642 TFLOP/s, tf32 at 2.5e13 FLOP / 77 ms =
# 325 TFLOP/s; the analytic gradient added ~22 ms to the matmul+max pass at N=1.28M, d=768.
# Not measured: plain fp32 (datasheet 67 TFLOP/s, taken as 51 effective) and HBM at 3.0 TB/s
# effective of 3.35.
H100 = {
    "bf16_flops": 640e12,
    "tf32_flops": 325e12,
    "fp32_flops": 51e12,
    "hbm_bytes_per_s": 3.0e12,
    "grad_extra_s": 0.022 / (1_281_167 * 768),  # per pool element (N*d), from the anchors
    "kcenter_pick_overhead_s": 40e-6,  # N-vector ops + the argmax sync per pick (17.3 s anchor - bytes)
    "mapping_host_s_per_centre": 5e-6,  # the candidate loop on the host (measured here, see JSON)
}
ANCHORS = {  # gpu-anchors.md, N=1,281,167, d=768, B=12,811, one H100
    "activeft_analytic_tf32_s_per_it": 0.245,
    "activeft_analytic_tf32_peak_gib": 7.2,
    "activeft_analytic_bf16_unpadded_s_per_it": 0.364,
    "matmul_max_bf16_padded_s": 0.061,
    "released_way_100k_rows_s_per_it": 0.101,
    "released_way_100k_rows_peak_gib": 13.7,
    "mapping_fast_s": 0.37,
    "mapping_naive_s": 23.9,
    "kcenter_fp32_s": 17.3,
    "kcenter_bf16_s": 10.9,
}


# ----------------------------------------------------------------------------------------- machine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def now(device: torch.device) -> float:
    _sync(device)
    return time.perf_counter()


def _meminfo_bytes(key: str) -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_facts(device: torch.device) -> dict[str, Any]:
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_avx512_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text()
        if Path("/proc/cpuinfo").exists()
        else None,
        "memory_gb": round((_meminfo_bytes("MemTotal") or 0) / 1e9, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "gpu_memory_gb": round(torch.cuda.get_device_properties(device).total_memory / 1e9, 1)
        if device.type == "cuda"
        else None,
    }


def machine_tag(facts: dict[str, Any]) -> str:
    if facts["gpu"]:
        return re.sub(r"[^a-z0-9]+", "-", facts["gpu"].lower()).strip("-")
    return f"cpu-{facts['cpu_cores_usable']}core"


def loadavg() -> str | None:
    try:
        return Path("/proc/loadavg").read_text().strip()
    except OSError:
        return None


def cpu_pressure() -> str | None:
    """Linux PSI: the share of time runnable tasks waited for a CPU (others' load on a shared host)."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


# ---------------------------------------------------------------------------------------- features


def make_features(path: Path, n: int, d: int, seed: int = 0, clusters: int = 1000, spread: float = 0.8) -> None:
    """Clustered, L2-normalised float32 features into a .npy, streamed (no N x d float64 temporary).

    `clusters` unit centres with uneven sizes (Dirichlet(2) weights); a point is its centre plus
    Gaussian noise of norm ~`spread`, normalised: cosine to its own centre ~ 1/sqrt(1+spread^2) = 0.78.
    """
    rng = np.random.default_rng([seed, n, d])
    k = min(clusters, n)
    centres = rng.standard_normal((k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    p = rng.dirichlet(np.full(k, 2.0))
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
    for s in range(0, n, 131072):
        m = min(131072, n - s)
        member = rng.choice(k, size=m, p=p)
        x = centres[member] + (spread / math.sqrt(d)) * rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + m] = x
    out.flush()
    del out


# ------------------------------------------------------------------------------- plain references


def kcenter_reference(ctx: SelectionContext, count: int) -> np.ndarray:
    """Greedy k-center the textbook way (as Sener & Savarese's code): after each pick the distance of
    every point to the new centre by `torch.cdist`, dmin = min(dmin, that), next = argmax dmin.
    Same first index (the context's generator) and tie rule (torch.argmax: first maximum)."""
    feats = ctx.features_tensor()
    n = feats.shape[0]
    first = int(torch.randint(n, (1,), generator=ctx.generator()).item())
    picks = [first]
    dmin = torch.cdist(feats, feats[first : first + 1]).squeeze(1)
    every = max(1, count // 100)
    while len(picks) < count:
        u = int(torch.argmax(dmin))
        picks.append(u)
        dmin = torch.minimum(dmin, torch.cdist(feats, feats[u : u + 1]).squeeze(1))
        if len(picks) % every == 0:
            ctx.report(len(picks), count)
    return np.asarray(picks, dtype=np.int64)


def activeft_init_indices(ctx: SelectionContext, count: int) -> np.ndarray:
    """ActiveFT's random init (same generator calls as `ActiveFT.fit_centres`)."""
    remaining = np.setdiff1d(np.arange(ctx.pool_size), ctx.selected)
    perm = torch.randperm(len(remaining), generator=ctx.generator())[:count].numpy()
    return remaining[perm]


def activeft_reference_fit(
    ctx: SelectionContext, count: int, iterations: int, rows: int | None = None
) -> tuple[torch.Tensor, list[float]]:
    """The released code's way: dense N x B similarity, the loss by `reference_loss`, autograd, Adam.
    With `rows`, only the first `rows` of the pool take part (to time an iteration at large N)."""
    pool = ctx.features_tensor()
    init_idx = torch.as_tensor(activeft_init_indices(ctx, count), device=pool.device)
    theta = pool[init_idx].clone().float().requires_grad_(True)
    feats = pool if rows is None else pool[:rows]
    opt = torch.optim.Adam([theta], lr=LR)
    history: list[float] = []
    every = max(1, iterations // 100)
    for it in range(iterations):
        opt.zero_grad(set_to_none=True)
        loss = reference_loss(feats, theta, TAU, LAM)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
        if (it + 1) % every == 0:
            ctx.report(it + 1, iterations)
    return theta.detach(), history


class InstrumentedActiveFT(ActiveFT):
    """ActiveFT unchanged; notes when the fit starts and ends and keeps the fitted centres."""

    def fit_centres(self, ctx: SelectionContext, feats: torch.Tensor, count: int) -> torch.Tensor:
        self.fit_start = now(feats.device)
        theta = super().fit_centres(ctx, feats, count)
        self.fit_end = now(feats.device)
        self.theta = theta
        return theta


# ----------------------------------------------------------------------------------------- workers


def _status_bytes(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


class Peak:
    """Peak memory of what runs between reset() and bytes(), above what was held at reset()."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.base = 0
        self.resettable = True

    def reset(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
            return
        try:  # Linux >= 4.0: "5" resets the peak RSS (VmHWM) to the current RSS
            Path("/proc/self/clear_refs").write_text("5")
            self.base = _status_bytes("VmRSS")
        except OSError:
            self.resettable = False
            self.base = _status_bytes("VmHWM")  # only a rise above the earlier high-water mark shows

    def bytes(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device) - self.base)
        return max(0, _status_bytes("VmHWM") - self.base)


class Progress:
    """The `ctx.report` callback: a timestamp per report, for the per-iteration / per-pick rate."""

    def __init__(self) -> None:
        self.stamps: list[tuple[int, float]] = []

    def __call__(self, done: int, total: int) -> None:
        self.stamps.append((done, time.perf_counter()))

    def rate(self) -> float | None:
        if len(self.stamps) < 2 or self.stamps[-1][0] == self.stamps[0][0]:
            return None
        (d0, t0), (d1, t1) = self.stamps[0], self.stamps[-1]
        return (t1 - t0) / (d1 - d0)


def _budget_units(per_unit: float, total_units: int, cap: float | None, floor: int) -> int:
    """How many of `total_units` to measure so that the measurement takes about `cap` seconds."""
    if cap is None or per_unit * total_units <= cap:
        return total_units
    return int(min(total_units, max(floor, cap // max(per_unit, 1e-9))))


def _context(spec: dict[str, Any], device: torch.device) -> SelectionContext:
    feats = np.load(spec["features"])  # into anonymous memory: the baseline every peak is taken above
    return SelectionContext(features=feats, selected=np.zeros(0, dtype=np.int64), seed=0, device=device)


def _measure(device: torch.device, fn: Any, repeats: int = 1) -> tuple[float, int, Any]:
    """(best seconds, peak bytes of the best, result) of fn() over `repeats` calls."""
    best: tuple[float, int, Any] | None = None
    peak = Peak(device)
    for _ in range(max(1, repeats)):
        peak.reset()
        t0 = now(device)
        out = fn()
        t = now(device) - t0
        mem = peak.bytes()
        if best is None or t < best[0]:
            best = (t, mem, out)
        del out
    assert best is not None
    return best


def task_kcenter(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    ctx = _context(spec, device)
    count, cap, ours = spec["count"], spec["cap"], spec["variant"] == "ours"

    def run(k: int, progress: Progress) -> np.ndarray:
        ctx.report = progress
        return KCenterGreedy().select(ctx, k) if ours else kcenter_reference(ctx, k)

    p0 = min(count, 8)
    t_probe, _, _ = _measure(device, lambda: run(p0, Progress()))
    k = _budget_units(t_probe / p0, count, cap, p0)
    progress = Progress()
    t, mem, picks = _measure(device, lambda: run(k, progress))
    per_pick = progress.rate() or t / k
    np.save(spec["picks_out"], picks)
    return {
        "seconds": t + (count - k) * per_pick,
        "measured_seconds": t,
        "measured_units": k,
        "units": count,
        "unit": "picks",
        "per_unit_seconds": per_pick,
        "extrapolated": k < count,
        "peak_bytes": mem,
    }


def _lag_seconds(
    feats: torch.Tensor,
    theta: torch.Tensor,
    device: torch.device,
    cap: float | None,
    repeats: int,
    dtype: torch.dtype | None = None,
    tf32: bool = False,
) -> dict[str, Any]:
    """One `loss_and_grad` call over the pool (best of `repeats`), or over its first rows, scaled."""
    n = feats.shape[0]
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        m0 = min(n, 16384)
        t0, _, _ = _measure(
            device, lambda: loss_and_grad(feats[:m0], theta, TAU, LAM, chunk=CHUNK, compute_dtype=dtype)
        )
        est = t0 * n / m0
        rows = n
        if cap is not None and est > cap:
            rows = min(n, max(CHUNK, int(cap / est * n) // CHUNK * CHUNK))
        reps = repeats if (cap is None or est * repeats <= 2 * cap) else 1
        t, mem, _ = _measure(
            device, lambda: loss_and_grad(feats[:rows], theta, TAU, LAM, chunk=CHUNK, compute_dtype=dtype), reps
        )
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    return {"seconds": t * n / rows, "rows": rows, "extrapolated": rows < n, "peak_bytes": mem, "repeats": reps}


def _mapping_ours(
    feats: torch.Tensor, theta: torch.Tensor, device: torch.device, cap: float | None, repeats: int
) -> dict[str, Any]:
    b = theta.shape[0]
    m0 = min(b, 64)
    t0, _, _ = _measure(device, lambda: map_centres_to_samples(feats, theta[:m0], None, TOPK, CHUNK))
    m = _budget_units(t0 / m0, b, cap, m0)
    reps = repeats if (cap is None or t0 / m0 * m * repeats <= 2 * cap) else 1
    t, mem, (picks, fallbacks) = _measure(
        device, lambda: map_centres_to_samples(feats, theta[:m], None, TOPK, CHUNK), reps
    )
    return {
        "seconds": t * b / m,
        "measured_seconds": t,
        "measured_units": m,
        "units": b,
        "unit": "centres",
        "extrapolated": m < b,
        "peak_bytes": mem,
        "fallbacks": int(fallbacks),
        "repeats": reps,
        "picks": picks,
    }


def _warm_up(ctx: SelectionContext, count: int) -> None:
    """One tiny select on the first rows: lazy imports and first-use allocations (Adam's, the
    mapping's) happen here, not inside the measured peak."""
    small = SelectionContext(
        features=np.asarray(ctx.features[:2048]), selected=np.zeros(0, dtype=np.int64), seed=1, device=ctx.device
    )
    ActiveFT(iterations=2).select(small, min(count, 64))


def task_activeft_ours(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    ctx = _context(spec, device)
    n, count, iterations, cap, repeats = ctx.pool_size, spec["count"], spec["iterations"], spec["cap"], spec["repeats"]
    feats = ctx.features_tensor()
    theta0 = feats[torch.as_tensor(activeft_init_indices(ctx, count), device=device)].clone()
    m0 = min(n, 16384)
    _warm_up(ctx, count)
    t_probe, _, _ = _measure(device, lambda: loss_and_grad(feats[:m0], theta0, TAU, LAM, chunk=CHUNK))
    est_it = t_probe * n / m0
    out: dict[str, Any] = {"iterations": iterations, "probe_seconds_per_iteration": est_it}
    if cap is not None and est_it > cap:
        # even one full-pool iteration is over the cap: time it on the first rows, no select()
        lag = _lag_seconds(feats, theta0, device, cap, 1)
        mapping = _mapping_ours(feats, theta0, device, cap, 1)
        out.update(
            mode="rows",
            seconds=iterations * lag["seconds"] + mapping["seconds"],
            per_iteration_seconds=lag["seconds"],
            measured_units=0,
            units=iterations,
            extrapolated=True,
            peak_bytes=max(lag["peak_bytes"], mapping["peak_bytes"]),
            loss_and_grad={"fp32": lag},
            note=f"one iteration timed on the first {lag['rows']:,} of {n:,} rows and scaled by N/rows; "
            f"mapping on {mapping['measured_units']} of {count} centres (random-init centres), scaled",
        )
        mapping.pop("picks")
        out["mapping"] = mapping
        return out
    del feats
    k = _budget_units(est_it, iterations, cap, min(2, iterations))
    sel = InstrumentedActiveFT(iterations=k)
    progress = Progress()
    ctx.report = progress
    peak = Peak(device)
    peak.reset()
    t0 = now(device)
    picks = sel.select(ctx, count)
    t = now(device) - t0
    mem = peak.bytes()
    ctx.report = Progress()
    per_it = progress.rate() or (sel.fit_end - sel.fit_start) / max(k, 1)
    theta = sel.theta
    np.save(spec["picks_out"], picks)
    np.save(spec["theta_out"], theta.cpu().numpy())
    out.update(
        mode="select",
        seconds=t + (iterations - k) * per_it,
        measured_seconds=t,
        measured_units=k,
        units=iterations,
        unit="iterations",
        extrapolated=k < iterations,
        per_iteration_seconds=per_it,
        features_seconds=sel.fit_start - t0,
        fit_seconds=sel.fit_end - sel.fit_start,
        mapping_in_select_seconds=t0 + t - sel.fit_end,
        fallbacks=int(sel.fallbacks),
        peak_bytes=mem,
        history=sel.history,
    )
    # per-call costs and the mapping alone, on the fitted centres (peaks above the features tensor)
    feats = ctx.features_tensor()
    lags = {"fp32": _lag_seconds(feats, theta, device, cap, repeats)}
    if device.type == "cuda":
        lags["tf32"] = _lag_seconds(feats, theta, device, cap, repeats, tf32=True)
    if device.type == "cuda" or "avx512_bf16" in Path("/proc/cpuinfo").read_text():
        lags["bf16"] = _lag_seconds(feats, theta, device, cap, repeats, dtype=torch.bfloat16)
    out["loss_and_grad"] = lags
    mapping = _mapping_ours(feats, theta, device, cap, repeats)
    same = np.array_equal(mapping.pop("picks"), picks[: mapping["measured_units"]])
    mapping["equals_select_mapping"] = bool(same)
    out["mapping"] = mapping
    return out


def task_activeft_ref(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    ctx = _context(spec, device)
    n, count, iterations, cap = ctx.pool_size, spec["count"], spec["iterations"], spec["cap"]
    m0 = min(n, 16384)

    def probe_fit(rows: int, its: int) -> Any:
        return activeft_reference_fit(ctx, count, its, rows=rows)

    probe = Progress()
    ctx.report = probe
    t_probe, _, _ = _measure(device, lambda: probe_fit(m0, 3))
    est_it = (probe.rate() or t_probe / 3) * n / m0
    out: dict[str, Any] = {"iterations": iterations, "probe_seconds_per_iteration": est_it}
    if cap is not None and est_it > cap:
        rows = min(n, max(m0, int(cap / est_it * n) // m0 * m0))
        rp = Progress()
        ctx.report = rp
        t, mem, _ = _measure(device, lambda: probe_fit(rows, 2))
        per_it = (rp.rate() or t / 2) * n / rows
        out.update(
            mode="rows",
            seconds=iterations * per_it,
            per_iteration_seconds=per_it,
            measured_units=0,
            units=iterations,
            extrapolated=True,
            peak_bytes=mem,
            note=f"2 iterations on the first {rows:,} of {n:,} rows, scaled by N/rows (not the memory)",
        )
        return out
    k = _budget_units(est_it, iterations, cap, min(2, iterations))
    progress = Progress()
    ctx.report = progress
    t, mem, (theta, history) = _measure(device, lambda: activeft_reference_fit(ctx, count, k))
    per_it = progress.rate() or t / k
    if k == iterations:
        np.save(spec["theta_out"], theta.cpu().numpy())
    out.update(
        mode="fit",
        seconds=t + (iterations - k) * per_it,
        measured_seconds=t,
        measured_units=k,
        units=iterations,
        unit="iterations",
        extrapolated=k < iterations,
        per_iteration_seconds=per_it,
        peak_bytes=mem,
        history=history,
    )
    return out


def task_activeft_paired(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """One ActiveFT iteration of ours (loss_and_grad + Adam step) and one of the reference (dense
    autograd + Adam step) alternately, from the same init, the order swapped each pair: the two
    see the same machine load, so the median of the paired ratios is the steadiest comparison."""
    ctx = _context(spec, device)
    cap = spec["cap"]
    feats = ctx.features_tensor()
    init = torch.as_tensor(activeft_init_indices(ctx, spec["count"]), device=device)
    th_o = feats[init].clone().float().requires_grad_(True)
    th_r = feats[init].clone().float().requires_grad_(True)
    opt_o, opt_r = torch.optim.Adam([th_o], lr=LR), torch.optim.Adam([th_r], lr=LR)

    def ours() -> None:
        _, grad = loss_and_grad(feats, th_o.detach(), TAU, LAM, chunk=CHUNK)
        th_o.grad = grad
        opt_o.step()

    def ref() -> None:
        opt_r.zero_grad(set_to_none=True)
        loss = reference_loss(feats, th_r, TAU, LAM)
        loss.backward()
        opt_r.step()
        float(loss.detach())

    def timed(fn: Any) -> float:
        t0 = now(device)
        fn()
        return now(device) - t0

    first = (timed(ours), timed(ref))  # warm-up pair, not counted
    pairs = spec.get("pairs", 10)
    if cap is not None:
        pairs = max(2, min(pairs, int(cap // sum(first))))
    t_o, t_r = [], []
    for i in range(pairs):
        if i % 2 == 0:
            t_o.append(timed(ours))
            t_r.append(timed(ref))
        else:
            t_r.append(timed(ref))
            t_o.append(timed(ours))
    ratios = [o / r for o, r in zip(t_o, t_r, strict=True)]
    return {
        "pairs": pairs,
        "ours_seconds": t_o,
        "ref_seconds": t_r,
        "ours_best": min(t_o),
        "ref_best": min(t_r),
        "ours_median": float(np.median(t_o)),
        "ref_median": float(np.median(t_r)),
        "ratio_of_best": min(t_o) / min(t_r),
        "ratio_median_paired": float(np.median(ratios)),
    }


def task_mapping_ref(spec: dict[str, Any], device: torch.device) -> dict[str, Any]:
    ctx = _context(spec, device)
    feats = ctx.features_tensor()
    theta = torch.from_numpy(np.load(spec["theta_in"])).to(device)
    ours = np.load(spec["picks_in"])
    b, cap = theta.shape[0], spec["cap"]
    m0 = min(b, 4)
    t0, _, _ = _measure(device, lambda: map_centres_naive(feats, theta[:m0]))
    m = _budget_units(t0 / m0, b, cap, m0)
    t, mem, naive = _measure(device, lambda: map_centres_naive(feats, theta[:m]))
    diff = np.flatnonzero(naive != ours[:m])
    return {
        "seconds": t * b / m,
        "measured_seconds": t,
        "measured_units": m,
        "units": b,
        "unit": "centres",
        "extrapolated": m < b,
        "peak_bytes": mem,
        "equal_to_ours": bool(len(diff) == 0),
        "compared": int(m),
        "first_mismatch": int(diff[0]) if len(diff) else None,
    }


TASKS = {
    "kcenter": task_kcenter,
    "activeft_ours": task_activeft_ours,
    "activeft_ref": task_activeft_ref,
    "activeft_paired": task_activeft_paired,
    "mapping_ref": task_mapping_ref,
}


def worker(spec_json: str) -> int:
    spec = json.loads(spec_json)
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = resolve_device(spec["device"])
    before = loadavg()
    result = TASKS[spec["task"]](spec, device)
    result.update(
        loadavg_before=before,
        loadavg_after=loadavg(),
        cpu_pressure_after=cpu_pressure(),
        peak_resettable=Peak(device).resettable if device.type == "cpu" else True,
    )
    Path(spec["result"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------- parent


def run_task(task: str, spec: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Run a task in a fresh interpreter `repeats` times; the fastest run is kept (its peak with it)."""
    runs = []
    for r in range(max(1, repeats)):
        s = dict(spec, task=task, result=str(Path(spec["dir"]) / f"{task}-{spec.get('variant', '')}-{r}.json"))
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(s)], capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            return {"failed": f"rc {proc.returncode}: {' | '.join(tail)}"}
        res = json.loads(Path(s["result"]).read_text())
        res["wall_seconds"] = time.perf_counter() - t0
        runs.append(res)
    best = min(runs, key=lambda x: x.get("measured_seconds", x.get("seconds", 0.0)))
    if len(runs) > 1:
        best["all_seconds"] = [x["seconds"] for x in runs]
    return best


def ref_memory_estimate(n: int, d: int, b: int) -> dict[str, float]:
    """Bytes the references need beyond the pool array (float32): the features tensor, plus for
    ActiveFT the N x B similarity, its gradient and the max-backward scatter; cdist's padded copy."""
    f = n * d * 4
    return {"activeft": 2 * f + 3 * n * b * 4, "kcenter": 3 * f + n * 8, "mapping": 2 * f + 24 * n}


def run_case(
    n: int, d: int, budget: float, feats_path: Path, args: argparse.Namespace, work: Path, probe_only: bool = False
) -> dict[str, Any]:
    count = int(budget * n)
    full = (
        not args.no_full_target
        and not probe_only
        and n == CPU_TARGET["n"]
        and d == CPU_TARGET["d"]
        and budget == CPU_TARGET["budget"]
        and args.iterations >= CPU_TARGET["iterations"]
    )
    cap = None if full else args.cap
    cap_other = max(args.cap, FULL_CASE_OTHER_CAP) if full else args.cap
    cdir = work / f"n{n}-d{d}-b{count}"
    cdir.mkdir(parents=True, exist_ok=True)
    base = {
        "features": str(feats_path),
        "count": count,
        "iterations": args.iterations,
        "device": args.device,
        "repeats": args.repeats,
        "dir": str(cdir),
        "threads": args.threads,
    }
    case: dict[str, Any] = {
        "n": n,
        "d": d,
        "budget": budget,
        "count": count,
        "iterations": args.iterations,
        "full": full,
        "probe_only": probe_only,
        "cap_seconds": cap,
        "loadavg_start": loadavg(),
        "torch_threads": args.threads or torch.get_num_threads(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    label = f"N={n:,} d={d} B={count:,}"
    print(f"[{label}] {'FULL (target case)' if full else 'cap ' + str(args.cap) + ' s'}; load {loadavg()}", flush=True)
    est = ref_memory_estimate(n, d, count)
    avail = _meminfo_bytes("MemAvailable") or 0
    if args.device != "cpu" and torch.cuda.is_available():
        avail = torch.cuda.mem_get_info()[0]

    def skip(what: str) -> dict[str, Any] | None:
        if probe_only:
            return {"skipped": f"probe case: ours only (estimate {est[what] / 1e9:.1f} GB)"}
        if n > args.max_reference_n:
            return {"skipped": f"N > --max-reference-n {args.max_reference_n:,} (estimate {est[what] / 1e9:.1f} GB)"}
        if est[what] > 0.85 * avail:
            return {"skipped": f"OOM estimate {est[what] / 1e9:.1f} GB (free {avail / 1e9:.1f} GB)"}
        return None

    kc_picks_ours, kc_picks_ref = cdir / "kc_ours.npy", cdir / "kc_ref.npy"
    case["kcenter_ours"] = run_task(
        "kcenter", dict(base, variant="ours", cap=cap_other, picks_out=str(kc_picks_ours)), args.repeats
    )
    _say(label, "k-center ours", case["kcenter_ours"])
    case["kcenter_ref"] = skip("kcenter") or run_task(
        "kcenter", dict(base, variant="ref", cap=cap_other, picks_out=str(kc_picks_ref)), args.repeats
    )
    _say(label, "k-center reference", case["kcenter_ref"])
    theta_ours, picks_ours, theta_ref = cdir / "theta_ours.npy", cdir / "picks_ours.npy", cdir / "theta_ref.npy"
    case["activeft_ours"] = run_task(
        "activeft_ours",
        dict(base, cap=cap, theta_out=str(theta_ours), picks_out=str(picks_ours)),
        1 if full else args.repeats,
    )
    _say(label, "ActiveFT ours", case["activeft_ours"])
    case["activeft_ref"] = skip("activeft") or run_task(
        "activeft_ref", dict(base, cap=cap, theta_out=str(theta_ref)), 1 if full else args.repeats
    )
    _say(label, "ActiveFT reference fit", case["activeft_ref"])
    ao_rows = case["activeft_ours"].get("mode") == "rows"
    case["activeft_paired"] = skip("activeft") or (
        {"skipped": "one iteration is over the cap"}
        if ao_rows
        else run_task("activeft_paired", dict(base, cap=cap_other, pairs=args.pairs), 1)
    )
    if _ok(case["activeft_paired"]):
        pr = case["activeft_paired"]
        print(
            f"  paired iterations ({pr['pairs']}): ours best {pr['ours_best']:.3g} s, reference best "
            f"{pr['ref_best']:.3g} s, median paired ratio {pr['ratio_median_paired']:.2f}",
            flush=True,
        )
    if theta_ours.exists():
        case["mapping_ref"] = skip("mapping") or run_task(
            "mapping_ref", dict(base, cap=cap_other, theta_in=str(theta_ours), picks_in=str(picks_ours)), 1
        )
    else:
        case["mapping_ref"] = skip("mapping") or {"skipped": "no fitted centres (ours ran in row mode)"}
    _say(label, "naive mapping", case["mapping_ref"])
    case["checks"] = checks(case, kc_picks_ours, kc_picks_ref, theta_ours, theta_ref)
    case["derived"] = derive(case)
    case["loadavg_end"] = loadavg()
    case["cpu_pressure_end"] = cpu_pressure()
    return case


def _say(label: str, what: str, res: dict[str, Any]) -> None:
    if "skipped" in res or "failed" in res:
        print(f"  {what}: {res.get('skipped') or res.get('failed')}", flush=True)
        return
    extra = " (extrapolated)" if res.get("extrapolated") else ""
    print(
        f"  {what}: {res['seconds']:.2f} s{extra}, peak +{res['peak_bytes'] / 1e6:.0f} MB, "
        f"wall {res.get('wall_seconds', 0):.0f} s",
        flush=True,
    )


def checks(case: dict[str, Any], kc_ours: Path, kc_ref: Path, theta_ours: Path, theta_ref: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if kc_ours.exists() and kc_ref.exists():
        a, b = np.load(kc_ours), np.load(kc_ref)
        m = min(len(a), len(b))
        diff = np.flatnonzero(a[:m] != b[:m])
        out["kcenter_equal"] = {
            "compared": int(m),
            "equal": bool(len(diff) == 0),
            "first_mismatch": int(diff[0]) if len(diff) else None,
        }
    mr = case.get("mapping_ref", {})
    if "equal_to_ours" in mr:
        out["mapping_equal"] = {
            "compared": mr["compared"],
            "equal": mr["equal_to_ours"],
            "first_mismatch": mr["first_mismatch"],
        }
    ho, hr = case["activeft_ours"].get("history"), case["activeft_ref"].get("history")
    if ho and hr:
        m = min(len(ho), len(hr))
        rel = np.abs(np.asarray(ho[:m]) - np.asarray(hr[:m])) / np.abs(np.asarray(hr[:m]))
        out["activeft_loss_history"] = {
            "compared_iterations": int(m),
            "max_rel_diff": float(rel.max()),
            "first": [ho[0], hr[0]],
            "last": [ho[m - 1], hr[m - 1]],
        }
    if theta_ours.exists() and theta_ref.exists():
        a, b = np.load(theta_ours), np.load(theta_ref)
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        out["activeft_centres_after_all_iterations"] = {"max_abs_diff_normalised": float(np.abs(a - b).max())}
    return out


def _ok(res: dict[str, Any]) -> bool:
    return bool(res) and "skipped" not in res and "failed" not in res


def derive(case: dict[str, Any]) -> dict[str, Any]:
    """Ours / reference ratios and the ActiveFT totals (reference: fit + naive mapping)."""
    d: dict[str, Any] = {}
    ko, kr, ao, ar, mr = (
        case[k] for k in ("kcenter_ours", "kcenter_ref", "activeft_ours", "activeft_ref", "mapping_ref")
    )
    if _ok(ko) and _ok(kr):
        d["kcenter_time_ratio"] = ko["seconds"] / kr["seconds"]
        d["kcenter_memory_ratio"] = ko["peak_bytes"] / max(kr["peak_bytes"], 1)
    if _ok(ao) and _ok(ar):
        d["activeft_per_iteration_ratio"] = ao["per_iteration_seconds"] / ar["per_iteration_seconds"]
    if _ok(ao) and _ok(ar) and _ok(mr):
        ref_total = ar["seconds"] + mr["seconds"]
        d["activeft_reference_total_seconds"] = ref_total
        d["activeft_reference_total_extrapolated"] = bool(ar.get("extrapolated") or mr.get("extrapolated"))
        d["activeft_reference_peak_bytes"] = max(ar["peak_bytes"], mr["peak_bytes"])
        d["activeft_time_ratio"] = ao["seconds"] / ref_total
        d["activeft_memory_ratio"] = ao["peak_bytes"] / max(d["activeft_reference_peak_bytes"], 1)
    if _ok(ao) and "mapping" in ao and _ok(mr):
        d["mapping_time_ratio"] = ao["mapping"]["seconds"] / mr["seconds"]
        d["mapping_memory_ratio"] = ao["mapping"]["peak_bytes"] / max(mr["peak_bytes"], 1)
    return d


def projection(n: int, d: int, b: int) -> dict[str, Any]:
    """Projected H100 seconds and GB from the FLOP and byte counts (see H100 above)."""
    bw = H100["hbm_bytes_per_s"]
    flops = 2.0 * n * b * d
    extra = H100["grad_extra_s"] * n * d
    bpad = int(math.ceil(b / 128) * 128)

    def it(rate: float, sims_bytes: int, cols: int) -> float:  # matmul + the (N x B) write and max read
        return 2.0 * n * cols * d / rate + 2.0 * n * cols * sims_bytes / bw + extra

    mapping_fp32 = flops / H100["fp32_flops"] + 2.0 * n * b * 4 / bw + b * H100["mapping_host_s_per_centre"]
    mapping_tf32 = flops / H100["tf32_flops"] + 2.0 * n * b * 4 / bw + b * H100["mapping_host_s_per_centre"]
    chunk = min(CHUNK, n)
    work_gb = (chunk * b * 4 + 2 * chunk * d * 4 + 4 * b * b * 4 + 8 * b * d * 4) / 1e9
    res = {
        "flop_per_iteration": flops,
        "activeft_s_per_it": {
            "fp32": it(H100["fp32_flops"], 4, b),
            "tf32": it(H100["tf32_flops"], 4, b),
            "bf16_B_padded_x128": it(H100["bf16_flops"], 2, bpad),
        },
        "mapping_s": {"fp32": mapping_fp32, "tf32": mapping_tf32},
        "kcenter_s": {
            dt: b * (n * d * nb / bw + 5 * n * 4 / bw + H100["kcenter_pick_overhead_s"])
            for dt, nb in (("fp32", 4), ("bf16", 2))
        },
        "activeft_working_set_gb": work_gb,
        "reference_activeft_dense_gb": 3 * n * b * 4 / 1e9,
    }
    res["activeft_300_plus_mapping_s"] = {
        "fp32": 300 * res["activeft_s_per_it"]["fp32"] + mapping_fp32,
        "tf32": 300 * res["activeft_s_per_it"]["tf32"] + mapping_tf32,
        "bf16_B_padded_x128": 300 * res["activeft_s_per_it"]["bf16_B_padded_x128"] + mapping_tf32,
    }
    return res


# -------------------------------------------------------------------------------------- markdown


def _t(res: dict[str, Any], key: str = "seconds") -> str:
    if not res:
        return "-"
    if "skipped" in res:
        return "skipped"
    if "failed" in res:
        return "failed"
    v = res[key]
    s = f"{v:.3g} s" if v < 100 else f"{v:,.0f} s"
    return ("~" + s) if res.get("extrapolated") else s


def _mb(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:,.0f} MB" if v < 1e10 else f"{v / 1e9:,.1f} GB"


def _r(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _how(res: dict[str, Any]) -> str:
    if not res:
        return ""
    if "skipped" in res:
        return res["skipped"]
    if "failed" in res:
        return res["failed"]
    if res.get("note"):
        return res["note"]
    if "measured_units" in res and "units" in res:
        unit = res.get("unit", "")
        return f"{res['measured_units']:,}/{res['units']:,} {unit}" + (
            ", extrapolated" if res.get("extrapolated") else ""
        )
    return ""


def target_line(cases: list[dict[str, Any]]) -> dict[str, Any] | None:
    for c in cases:
        if (c["n"], c["d"], c["budget"]) == (CPU_TARGET["n"], CPU_TARGET["d"], CPU_TARGET["budget"]) and not c[
            "probe_only"
        ]:
            ao, der = c["activeft_ours"], c["derived"]
            if not _ok(ao):
                return None
            full = ao.get("measured_units") == CPU_TARGET["iterations"] and not ao.get("extrapolated")
            ref_t = der.get("activeft_reference_total_seconds")
            under = ao["seconds"] < CPU_TARGET["seconds"]
            not_slower = ref_t is not None and ao["seconds"] <= ref_t
            fit_not_slower = (
                _ok(c["activeft_ref"])
                and ao["fit_seconds"] * (CPU_TARGET["iterations"] / max(ao["measured_units"], 1))
                <= c["activeft_ref"]["seconds"]
            )
            pr = c.get("activeft_paired", {})
            return {
                "ours_seconds": ao["seconds"],
                "ours_measured_in_full": bool(full),
                "reference_seconds": ref_t,
                "paired_iteration_ratio_median": pr.get("ratio_median_paired") if _ok(pr) else None,
                "ours_best_iteration_x300_plus_mapping": (
                    pr["ours_best"] * CPU_TARGET["iterations"] + ao["mapping"]["seconds"]
                )
                if _ok(pr)
                else None,
                "load_during": [ao.get("loadavg_before"), ao.get("loadavg_after")],
                "reference_extrapolated": der.get("activeft_reference_total_extrapolated"),
                "under_5_min": bool(under),
                "not_slower_than_reference": bool(not_slower),
                "fit_alone_not_slower": bool(fit_not_slower),
                "pass": bool(under and not_slower and full),
            }
    return None


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['cpu_cores_usable']} cores, {m['memory_gb']} GB RAM, no GPU"
    lines = [
        f"Machine: {where}; torch {m['torch']}, {m['torch_threads']} torch threads, device `{m['device']}`.",
        "Commands (merged with `--merge`): " + "; ".join(f"`{c}`" for c in result["commands"]),
        f"Features: synthetic clustered, L2-normalised float32 (seed 0, 1000 clusters). ActiveFT defaults "
        f"(tau {TAU}, lambda {LAM}, Adam lr {LR}, chunk {CHUNK}, top-k {TOPK}, fp32), {result['config']['iterations']}"
        " iterations over the whole pool. `~` = extrapolated linearly from the measured part (column 'how').",
        "Peak = rise of the process's peak RSS (CPU) / max_memory_allocated (CUDA) above the pool array; both sides "
        "include the normalised copy `ctx.features_tensor()` makes (N*d*4 bytes, twice while it is made).",
        "",
        "| N | d | B | what | ours | reference | time ours/ref | peak ours | peak ref | mem ours/ref | how (ours; ref) "
        "| load (1/5/15 min); threads |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        if c["probe_only"]:
            continue
        ko, kr, ao, ar, mr, der = (
            c[k] for k in ("kcenter_ours", "kcenter_ref", "activeft_ours", "activeft_ref", "mapping_ref", "derived")
        )
        head = f"| {c['n']:,} | {c['d']} | {c['count']:,} ({c['budget']:.0%})"
        load = " ".join((c.get("loadavg_start") or "").split()[:3]) + f"; {c.get('torch_threads', '?')} threads"
        lines.append(
            f"{head} | k-center, B picks | {_t(ko)} | {_t(kr)} | {_r(der.get('kcenter_time_ratio'))} | "
            f"{_mb(ko.get('peak_bytes'))} | {_mb(kr.get('peak_bytes'))} | "
            f"{_r(der.get('kcenter_memory_ratio'))} | {_how(ko)}; {_how(kr)} | {load} |"
        )
        if _ok(ao):
            per_o = f"{ao['per_iteration_seconds']:.3g} s"
            per_r = f"{ar['per_iteration_seconds']:.3g} s" if _ok(ar) else _t(ar)
            lines.append(
                f"{head} | ActiveFT, one iteration (mean in the runs below) | {per_o} | {per_r} | "
                f"{_r(der.get('activeft_per_iteration_ratio'))} | | | | from the timed iterations | |"
            )
            pr = c.get("activeft_paired", {})
            if _ok(pr):
                lines.append(
                    f"{head} | ActiveFT, one iteration, alternating pairs (best) | {pr['ours_best']:.3g} s | "
                    f"{pr['ref_best']:.3g} s | {pr['ratio_of_best']:.2f} (median of paired ratios "
                    f"{pr['ratio_median_paired']:.2f}) | | | | {pr['pairs']} pairs, same load | |"
                )
            ref_total = der.get("activeft_reference_total_seconds")
            ref_s = (
                "-"
                if ref_total is None
                else (
                    ("~" if der.get("activeft_reference_total_extrapolated") else "") + f"{ref_total:.3g} s"
                    if ref_total < 100
                    else ("~" if der.get("activeft_reference_total_extrapolated") else "") + f"{ref_total:,.0f} s"
                )
            )
            if ref_total is None and not _ok(ar):
                ref_s = _t(ar)
            lines.append(
                f"{head} | ActiveFT, {c['iterations']} its + mapping | {_t(ao)} | {ref_s} | "
                f"{_r(der.get('activeft_time_ratio'))} | {_mb(ao.get('peak_bytes'))} | "
                f"{_mb(der.get('activeft_reference_peak_bytes'))} | {_r(der.get('activeft_memory_ratio'))} | "
                f"{_how(ao)}; fit {_how(ar)}, mapping {_how(mr)} | |"
            )
            mo = ao.get("mapping", {})
            lines.append(
                f"{head} | mapping alone, B centres | {_t(mo)} | {_t(mr)} | "
                f"{_r(der.get('mapping_time_ratio'))} | {_mb(mo.get('peak_bytes'))} | "
                f"{_mb(mr.get('peak_bytes'))} | {_r(der.get('mapping_memory_ratio'))} | "
                f"{_how(mo)}; {_how(mr)} | |"
            )
        else:
            lines.append(f"{head} | ActiveFT | {_t(ao)} | {_t(ar)} | | | | | {_how(ao)} | |")
    tl = result.get("cpu_target")
    if tl:
        lines += [
            "",
            f"CPU target (N = 100,000, d = 384, B = 1%, 300 iterations + mapping): ours {tl['ours_seconds']:.0f} s "
            f"({'measured in full' if tl['ours_measured_in_full'] else 'EXTRAPOLATED'}), reference "
            f"{tl['reference_seconds']:.0f} s{' (partly extrapolated)' if tl['reference_extrapolated'] else ''}; "
            f"under 5 min: {'pass' if tl['under_5_min'] else 'FAIL'}; not slower than the reference: "
            f"{'pass' if tl['not_slower_than_reference'] else 'FAIL'}; overall **{'pass' if tl['pass'] else 'FAIL'}**. "
            f"Load average before / after ours' run: {tl['load_during'][0]} / {tl['load_during'][1]}.",
        ]
        if tl.get("paired_iteration_ratio_median") is not None:
            lines.append(
                "Alternating iterations (same load): ours / reference = "
                f"{tl['paired_iteration_ratio_median']:.2f} "
                f"(median of the pairs); ours' best iteration x 300 + mapping = "
                f"{tl['ours_best_iteration_x300_plus_mapping']:.0f} s."
            )
    lines += [
        "",
        "Per-call cost of `loss_and_grad` (the whole pool, best of the repeats; `~`: from the first rows):",
        "",
        "| N | d | B | fp32 | bf16 matmul | tf32 |",
        "|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        lag = c["activeft_ours"].get("loss_and_grad", {}) if _ok(c["activeft_ours"]) else {}
        lines.append(
            f"| {c['n']:,} | {c['d']} | {c['count']:,} | {_t(lag.get('fp32', {}))} | "
            f"{_t(lag.get('bf16', {}))} | {_t(lag.get('tf32', {}))} |"
        )
    lines += [
        "",
        "Checks:",
        "",
        "| N | d | B | k-center picks = reference | fast mapping = naive | "
        "ActiveFT loss history vs autograd | centres after all iterations |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result["cases"]:
        ch = c["checks"]
        kc = ch.get("kcenter_equal")
        mp = ch.get("mapping_equal")
        lh = ch.get("activeft_loss_history")
        th = ch.get("activeft_centres_after_all_iterations")
        kc_s = (
            "-"
            if not kc
            else (
                f"equal ({kc['compared']:,} picks)"
                if kc["equal"]
                else f"DIFFER at pick {kc['first_mismatch']} of {kc['compared']:,}"
            )
        )
        mp_s = (
            "-"
            if not mp
            else (
                f"equal ({mp['compared']:,} centres)"
                if mp["equal"]
                else f"DIFFER at centre {mp['first_mismatch']} of {mp['compared']:,}"
            )
        )
        lh_s = "-" if not lh else f"max rel diff {lh['max_rel_diff']:.1e} over {lh['compared_iterations']} its"
        th_s = "-" if not th else f"max abs diff {th['max_abs_diff_normalised']:.1e}"
        lines.append(f"| {c['n']:,} | {c['d']} | {c['count']:,} | {kc_s} | {mp_s} | {lh_s} | {th_s} |")
    probes = [c for c in result["cases"] if c["probe_only"]]
    if probes:
        lines += [
            "",
            "Large-N probes (ours only; references skipped):",
            "",
            "| N | d | B | k-center, B picks | ActiveFT per iteration | ActiveFT 300 its + mapping | "
            "mapping alone | peak ours (k-center / ActiveFT / mapping) | how | load |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in probes:
            ko, ao = c["kcenter_ours"], c["activeft_ours"]
            mo = ao.get("mapping", {}) if _ok(ao) else {}
            per = f"~{ao['per_iteration_seconds']:.3g} s" if _ok(ao) else _t(ao)
            lines.append(
                f"| {c['n']:,} | {c['d']} | {c['count']:,} | {_t(ko)} | {per} | {_t(ao)} | {_t(mo)} | "
                f"{_mb(ko.get('peak_bytes'))} / {_mb(ao.get('peak_bytes'))} / {_mb(mo.get('peak_bytes'))} | "
                f"k-center {_how(ko)}; ActiveFT {_how(ao)} | "
                f"{' '.join((c.get('loadavg_start') or '').split()[:3])} |"
            )
    lines += [
        "",
        "Projected H100 cost from the FLOP and byte counts (not measured here; rates: bf16 640, tf32 325 "
        "TFLOP/s measured in gpu-anchors.md, fp32 51 TFLOP/s and HBM 3.0 TB/s assumed; per iteration "
        "2*N*B*d FLOP + the N x B similarity written and read once + the gradient's index_add):",
        "",
        "| N | d | B | ActiveFT 300 its + mapping: fp32 (default) / tf32 / bf16, B padded x128 "
        "| mapping fp32 / tf32 "
        "| k-center fp32 / bf16 | ActiveFT working set (ours) | dense reference, 3 x N x B |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in result["projection"]:
        a, mp, kc = p["activeft_300_plus_mapping_s"], p["mapping_s"], p["kcenter_s"]
        lines.append(
            f"| {p['n']:,} | {p['d']} | {p['count']:,} | {a['fp32']:.3g} / {a['tf32']:.3g} / "
            f"{a['bf16_B_padded_x128']:.3g} s | {mp['fp32']:.3g} / {mp['tf32']:.3g} s | "
            f"{kc['fp32']:.3g} / {kc['bf16']:.3g} s | {p['activeft_working_set_gb']:.2g} GB | "
            f"{p['reference_activeft_dense_gb']:.3g} GB |"
        )
    lines += [
        "",
        f"Load: start {result['loadavg_start']}, end {result['loadavg_end']}; CPU pressure at the end: "
        f"{result['cpu_pressure_end']}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, nargs="*", default=[10_000, 100_000], help="pool sizes (none: only --probe)")
    ap.add_argument("--d", type=int, nargs="+", default=[384, 768])
    ap.add_argument("--budget", type=float, nargs="+", default=[0.01, 0.05])
    ap.add_argument("--iterations", type=int, default=300, help="ActiveFT iterations (what is reported)")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads in the measuring processes (default: torch's, one per core)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="runs of each capped measurement; the fastest is kept")
    ap.add_argument(
        "--cap",
        type=float,
        default=10.0,
        help="seconds a measurement may take before it is cut short and extrapolated (not the target case)",
    )
    ap.add_argument("--pairs", type=int, default=10, help="alternating ours/reference ActiveFT iterations")
    ap.add_argument("--no-full-target", action="store_true", help="cap the CPU target case too")
    ap.add_argument("--max-reference-n", type=int, default=200_000, help="skip the references above this N")
    ap.add_argument(
        "--probe",
        action="append",
        default=[],
        metavar="N:d:B",
        help="an extra case, ours only, capped (e.g. 1281167:768:0.01)",
    )
    ap.add_argument("--merge", action="store_true", help="keep the cases of an earlier results file not re-run")
    ap.add_argument("--quick", action="store_true", help="smoke run: N=10k, d=384, B=1%%, 30 iterations, cap 3 s")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default=None, help="machine tag for the file names (default: from the machine)")
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.quick:
        args.n, args.d, args.budget, args.iterations, args.cap = [10_000], [384], [0.01], 30, 3.0

    device = resolve_device(args.device)
    args.device = str(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    facts = machine_facts(device)
    tag = args.tag or machine_tag(facts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"selection_speed-{tag}"
    print(
        f"selection speed on {facts['gpu'] or facts['cpu']} ({device}), {facts['torch_threads']} torch threads; "
        f"load {loadavg()}",
        flush=True,
    )
    start_load = loadavg()
    cases: list[dict[str, Any]] = []
    grid = [(n, d, b, False) for n in args.n for d in args.d for b in args.budget]
    for p in args.probe:
        n_s, d_s, b_s = p.split(":")
        grid.append((int(n_s), int(d_s), float(b_s), True))
    with tempfile.TemporaryDirectory(prefix="vecaf-selection-speed-") as tmp:
        work = Path(tmp)
        made: dict[tuple[int, int], Path] = {}
        for n, d, b, probe in grid:
            if (n, d) not in made:
                for old in made.values():  # one pool on disk at a time
                    old.unlink(missing_ok=True)
                made.clear()
                path = work / f"feats-{n}-{d}.npy"
                t0 = time.perf_counter()
                make_features(path, n, d)
                print(
                    f"features N={n:,} d={d}: {n * d * 4 / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s", flush=True
                )
                made[(n, d)] = path
            cases.append(run_case(n, d, b, made[(n, d)], args, work, probe_only=probe))
    keys = {(c["n"], c["d"], c["count"], c["probe_only"]) for c in cases}
    command = "python benchmarks/selection_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    commands = [command]
    if args.merge and (out / f"{stem}.json").exists():
        old = json.loads((out / f"{stem}.json").read_text())
        commands = old.get("commands", [old.get("command", "")]) + commands
        kept = [c for c in old["cases"] if (c["n"], c["d"], c["count"], c["probe_only"]) not in keys]
        cases = sorted(kept + cases, key=lambda c: (c["probe_only"], c["n"], c["d"], c["count"]))
    proj_keys = sorted(
        {(c["n"], c["d"], c["count"]) for c in cases}
        | {(GPU_TARGET["n"], d, int(b * GPU_TARGET["n"])) for d in (384, 768) for b in (0.01, 0.05)}
    )
    projections = [dict(n=n, d=d, count=b, **projection(n, d, b)) for n, d, b in proj_keys]
    gpu_t = projection(GPU_TARGET["n"], GPU_TARGET["d"], GPU_TARGET["count"])
    result = {
        "benchmark": "selection_speed",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commands": commands,
        "machine": facts,
        "config": {
            "iterations": args.iterations,
            "cap_seconds": args.cap,
            "repeats": args.repeats,
            "max_reference_n": args.max_reference_n,
            "tau": TAU,
            "lam": LAM,
            "lr": LR,
            "chunk": CHUNK,
            "topk": TOPK,
            "features": "clustered (1000 clusters, Dirichlet(2) sizes, cos to centre ~0.78), "
            "L2-normalised float32, seed 0",
        },
        "cases": cases,
        "cpu_target": target_line(cases),
        "projection_model": H100,
        "gpu_anchors": ANCHORS,
        "projection": projections,
        "gpu_target_projection": {
            "targets": GPU_TARGET,
            "activeft_300_plus_mapping_s": gpu_t["activeft_300_plus_mapping_s"],
            "mapping_s": gpu_t["mapping_s"],
            "kcenter_s": gpu_t["kcenter_s"],
            "activeft_working_set_gb": gpu_t["activeft_working_set_gb"],
            "measured": False,
        },
        "loadavg_start": start_load,
        "loadavg_end": loadavg(),
        "cpu_pressure_end": cpu_pressure(),
    }
    md = markdown(result)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / f"{stem}.md").write_text(f"# Selection speed and memory ({tag})\n\n{md}")
    print()
    print(md)
    print(f"written: {out / stem}.json, .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
