"""Selector zoo: time and peak memory of every selector as the pool grows, and kmeans against
scikit-learn's KMeans in the same run.

Measures (see benchmarks/README.md, "Selector zoo: speed and memory"), for every N x d of the grid
(default N = 10k and 100k, d = 384 and 768, B = 1% of N), on the synthetic clustered, L2-normalised
float32 features of selection_speed.py (its `make_features`, seed 0):

1. every selector's `select(ctx, B)` with its default options, the context built by the engine's
   own `build_context`: the feature-only ones (random, coreset, kmeans, activeft, typiclust,
   probcover, bilaf, maxherding, usl) and the model-based ones (entropy, margin, least-confidence,
   badge, bald, coreset-model, uherding). The model-based ones read synthetic model outputs served
   without a model: embeddings (N x D, D = d; `make_features` with seed 1), logits
   4 * embeddings @ W (C = 100 classes, W a seeded Gaussian D x C), probabilities their softmax and
   T = 20 MC-dropout draws softmax(logits + N(0, 1) noise). Those outputs are computed before the
   clock starts and put in the round's output cache (as the engine's own cache would hold them), so
   **no forward pass is measured**: only the selector's own work on the outputs. vecaf is not in
   the zoo (it needs labels and text embeddings; its selection is ActiveFT's fit on augmented
   features, see the activeft row and selection_speed.py).
2. kmeans (`KMeans(n_init=1, max_iter=25, tol=0, init="k-means++")`) against
   `sklearn.cluster.KMeans(n_clusters=B, n_init=1, max_iter=25, tol=0, init="k-means++",
   algorithm="lloyd")` on the same array: once end to end (seeding + Lloyd), once Lloyd alone from
   the same k-means++ centres (ours' seeding, passed to scikit-learn as `init`), torch and
   scikit-learn's OpenMP/BLAS pools limited to the same thread count (threadpoolctl); the number of
   Lloyd iterations each ran is recorded (tol 0: both stop early only at exact convergence).
3. the CPU targets: typiclust and probcover at N = 100,000, d = 384, B = 1,000 under 120 s each,
   and kmeans no slower than scikit-learn (time ratio <= 1).

Every case runs in a fresh subprocess (`--batch 1`); peak memory is the rise of VmHWM above VmRSS
after a warm-up select on 2,000 rows (`/proc/self/clear_refs`), or `torch.cuda.max_memory_allocated`
on CUDA (selection_speed.py's `Peak`), so the pool array and the served outputs are the baseline.
A selection still running `--cap` seconds after its clock started is killed; its time is then
extrapolated linearly from its `ctx.report` progress (the units done when it was killed, each
result says how many), and its peak is the peak up to the kill. Above `--always-run-n` (100k) a
case runs only when its projection from the smaller N (the measured log-log slope of the two
largest N, or the card's exponent with one point) is under the cap and its memory estimate fits;
otherwise its time is that projection (`~`, "projected"). A selector whose module is missing or
fails to import is skipped with a note. The H100 projection for the issue's GPU target
(N = 1,281,167, d = 768, B = 12,811, within 60 s) is written beside the measurements, from FLOP
and byte counts with the rates of /work/shared/spec/gpu-anchors.md (selection_speed.py's `H100`).

    python benchmarks/zoo_speed.py [--n 10000 100000 1000000] [--d 384 768] [--budget 0.01]
        [--selectors ...] [--device auto] [--threads T] [--cap 300] [--kmeans-iter 25] [--no-kmeans]
        [--no-zoo] [--merge] [--out benchmarks/results]
    python benchmarks/zoo_speed.py --device cuda --n 1281167 --d 768 --cap 60 --merge   # on a GPU
    python benchmarks/zoo_speed.py --quick    # smoke run, N = 2,000, one process, writes nothing
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import signal
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

from selection_speed import (  # noqa: E402  (benchmarks/selection_speed.py)
    ANCHORS,
    GPU_TARGET,
    H100,
    Peak,
    _mb,
    _meminfo_bytes,
    cpu_pressure,
    loadavg,
    machine_facts,
    machine_tag,
    make_features,
    now,
    projection,
)

from vecaf_bench.device import resolve_device  # noqa: E402

CLASSES, MC_SAMPLES, MC_DROPOUT = 100, 20, 0.5
WARM_ROWS = 2000
TARGETS = {"n": 100_000, "d": 384, "count": 1_000, "seconds": 120.0, "selectors": ("typiclust", "probcover")}


@dataclasses.dataclass(frozen=True)
class Entry:
    """One selector of the zoo: where it lives, what it reads, what its card says it costs."""

    module: str
    reads: str
    cost: str
    exponent: float  # the card's leading power of N with B = 1% of N (for projections from one point)
    outputs: tuple[str, ...] = ()  # pool_outputs(what=...) it asks for; () and mc: the MC draws
    mc: int = 0


FEATURES = "features (N x d)"
ZOO: dict[str, Entry] = {
    "random": Entry("random", "nothing (the seed)", "O(N)", 1),
    "coreset": Entry("coreset", FEATURES, "O(B N d): one matvec per pick", 2),
    "kmeans": Entry("kmeans", FEATURES, "O(n_init (B + iters) N B d): seeding + Lloyd", 2),
    "activeft": Entry("activeft", FEATURES, "O(iters N B d) + mapping", 2),
    "typiclust": Entry("typiclust", FEATURES, "O(iters N K d), K = min(B, 500); + O(N^2 d / K)", 2),
    "probcover": Entry("probcover", FEATURES, "O(N^2 d) graph + O(E + B N) greedy", 2),
    "bilaf": Entry("bilaf", FEATURES, "O(iters N K d), K = 0.5% N cores; + O(N^2 d / K)", 2),
    "maxherding": Entry(
        "maxherding", FEATURES, "O(R C d) first gains + O(B f R C d) lazy refreshes; R, C <= 20,000 (auto)", 3
    ),
    "usl": Entry("usl", FEATURES, "O(N^2 d) kNN density + O(iters N B d) k-means", 2),
    "entropy": Entry("entropy", "probs (N x C)", "O(N C) + sort", 1, ("probs",)),
    "margin": Entry("margin", "probs (N x C)", "O(N C) + sort", 1, ("probs",)),
    "least-confidence": Entry("least_confidence", "probs (N x C)", "O(N C) + sort", 1, ("probs",)),
    "badge": Entry("badge", "probs (N x C) + embeddings (N x D)", "O(B N (C + D))", 2, ("probs", "embeddings")),
    "bald": Entry("bald", "MC-dropout probs (T x N x C)", "O(T N C)", 1, (), MC_SAMPLES),
    "coreset-model": Entry("coreset_model", "embeddings (N x D)", "O(B N D)", 2, ("embeddings",)),
    "uherding": Entry("uherding", "features + logits (N x C)", "as maxherding", 3, ("logits",)),
}
MODEL_BASED = tuple(k for k, e in ZOO.items() if e.outputs or e.mc)
NOT_IN_ZOO = {
    "vecaf": "needs labels and annotation text embeddings; its selection cost is ActiveFT's fit on "
    "CEA-augmented features (the activeft row) plus CEA, O(N C d)",
}


def selector_class(name: str) -> Any:
    """The registered class of `name` (ImportError / KeyError when the module is missing or broken)."""
    mod = importlib.import_module(f"vecaf_bench_plugins.selectors.{ZOO[name].module}")
    return mod.vecaf_bench_add_selectors()[name]


# ----------------------------------------------------------------------------------------- outputs


def synthetic_logits(emb: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, C) float32 logits 4 * emb @ W, W ~ N(0, 1) (D x C), seeded: a peaked, clustered softmax."""
    w = np.random.default_rng([seed, CLASSES, emb.shape[1]]).standard_normal((emb.shape[1], CLASSES))
    w = (4.0 * w).astype(np.float32)
    out = np.empty((emb.shape[0], CLASSES), dtype=np.float32)
    for s in range(0, emb.shape[0], 65536):
        np.matmul(emb[s : s + 65536], w, out=out[s : s + 65536])
    return out


def _softmax_(z: np.ndarray) -> np.ndarray:
    z -= z.max(axis=-1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=-1, keepdims=True)
    return z


def synthetic_mc_probs(logits: np.ndarray, draws: int, seed: int = 0) -> np.ndarray:
    """(T, N, C) float32: softmax(logits + N(0, 1)) per draw, seeded."""
    rng = np.random.default_rng([seed, draws, logits.shape[0]])
    out = np.empty((draws,) + logits.shape, dtype=np.float32)
    for t in range(draws):
        out[t] = logits
        out[t] += rng.standard_normal(logits.shape, dtype=np.float32)
        _softmax_(out[t])
    return out


class Served:
    """The engine's outputs provider, without a model: rows of fixed arrays for the asked indices.
    Time spent here inside the measured select is recorded (it should be 0: outputs are pre-cached)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays
        self.seconds = 0.0
        self.calls = 0

    def __call__(self, idx: np.ndarray, what: frozenset[str], mc: int, p: float) -> tuple[dict[str, np.ndarray], int]:
        t0 = time.perf_counter()
        whole = len(idx) == len(self.arrays["logits"])
        got = {k: (self.arrays[k] if whole else self.arrays[k][idx]) for k in what if k != "mc_probs"}
        if mc:
            got["mc_probs"] = self.arrays["mc_probs"] if whole else self.arrays["mc_probs"][:, idx]
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return got, 0  # 0 forward batches: read off fixed arrays, as under a frozen backbone


def make_context(name: str, instance: Any, feats: np.ndarray, device: torch.device, served: Served | None,
                 report: Any = None) -> Any:  # fmt: skip
    from vecaf_bench.api import capabilities_of
    from vecaf_bench.run.selection_round import build_context

    model = served is not None
    return build_context(
        selector=name,
        capabilities=capabilities_of(instance),
        features=feats,
        seed=0,
        round=1 if model else 0,  # a trained head (uherding uses uniform weights in round 0)
        rounds=3,
        num_classes=CLASSES,
        device=device,
        trained_steps=10 if model else 0,
        outputs=served,
        report=report,
    )


# ----------------------------------------------------------------------------------------- workers


class CountPasses:
    """Counts kmeans.assign calls (one per Lloyd iteration + one per run): typiclust and usl use it too."""

    def __init__(self) -> None:
        from vecaf_bench_plugins.selectors import kmeans

        self.mod, self.inner, self.calls = kmeans, kmeans.assign, 0

        def counted(*a: Any, **k: Any) -> Any:
            self.calls += 1
            return self.inner(*a, **k)

        kmeans.assign = counted


class ProgressFile:
    """`ctx.report` writing `done total seconds peak_bytes cpu_seconds` lines: what the parent extrapolates from
    when it kills a selection at the cap. The first line, `start`, marks when the clock started."""

    def __init__(self, path: Path, peak: Peak) -> None:
        self.f = path.open("w", buffering=1)
        self.peak = peak
        self.t0 = self.c0 = 0.0

    def start(self) -> None:
        self.t0, self.c0 = time.monotonic(), time.process_time()
        self.f.write(f"start {self.t0:.6f}\n")

    def __call__(self, done: int, total: int) -> None:
        t, c = time.monotonic() - self.t0, time.process_time() - self.c0
        self.f.write(f"{done} {total} {t:.4f} {self.peak.bytes()} {c:.4f}\n")


def _jsonable(stats: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in dict(stats or {}).items():
        if isinstance(v, (bool, int, float, str)) or v is None:
            out[k] = v
        elif isinstance(v, (np.integer, np.floating)):
            out[k] = v.item()
    return out


def task_select(case: dict[str, Any], device: torch.device) -> dict[str, Any]:
    name, entry = case["selector"], ZOO[case["selector"]]
    cls = selector_class(name)
    opts = case.get("options") or {}
    feats = np.load(case["features"])  # anonymous memory: part of the baseline
    served = None
    if name in MODEL_BASED:
        emb = np.load(case["embeddings"])
        arrays = {"embeddings": emb, "logits": synthetic_logits(emb)}
        if entry.mc:
            arrays["mc_probs"] = synthetic_mc_probs(arrays["logits"], entry.mc)
        served = Served(arrays)
    # warm-up: lazy imports and first-use allocations, on the first rows
    m = min(WARM_ROWS, len(feats))
    warm = None
    if served is not None:
        warm = Served({k: (v[:, :m] if k == "mc_probs" else v[:m]) for k, v in served.arrays.items()})
    inst = cls(**opts)
    inst.select(make_context(name, inst, np.ascontiguousarray(feats[:m]), device, warm), min(case["count"], 20))
    peak = Peak(device)
    progress = ProgressFile(Path(case["progress"]), peak)
    inst = cls(**opts)
    ctx = make_context(name, inst, feats, device, served, report=progress)
    if served is not None:  # the round's output cache filled before the clock (no forward pass timed)
        ctx.pool_outputs(what=entry.outputs, mc_dropout=entry.mc, dropout=MC_DROPOUT)
        served.seconds, served.calls = 0.0, 0
    passes = CountPasses()
    runs: list[tuple[float, int]] = []
    res: Any = None
    while True:
        passes.calls = 0
        peak.reset()
        if not runs:
            progress.start()
        t0, c0 = now(device), time.process_time()
        res = inst.select(ctx, case["count"])
        t, c = now(device) - t0, time.process_time() - c0
        runs.append((t, peak.bytes(), c))
        if len(runs) >= case["repeats"] or sum(r[0] for r in runs) > case["repeat_under"]:
            break
        inst = cls(**opts)
    picks = np.asarray(getattr(res, "indices", res), dtype=np.int64)
    best = min(runs)
    return {
        "seconds": best[0],
        "peak_bytes": best[1],
        "cpu_seconds": best[2],
        "runs": len(runs),
        "all_seconds": [r[0] for r in runs],
        "picks": int(len(picks)),
        "unique_picks": int(len(np.unique(picks))),
        "stats": _jsonable(getattr(res, "stats", None)),
        "kmeans_assign_passes": passes.calls,
        "served_seconds_in_select": served.seconds if served else None,
        "served_calls_in_select": served.calls if served else None,
        "options": opts,
    }


def task_kmeans(case: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Ours or scikit-learn's k-means, end to end and Lloyd alone from the same k-means++ start."""
    from threadpoolctl import threadpool_info, threadpool_limits

    threads = case["threads"]
    limiter = threadpool_limits(limits=threads)
    feats = np.load(case["features"])
    k, iters = case["count"], case["iterations"]
    start_path = Path(case["start"])
    peak = Peak(device)
    out: dict[str, Any] = {"threads": threads, "torch_threads": torch.get_num_threads()}
    out["threadpools"] = [
        {"api": p.get("user_api"), "lib": p.get("internal_api"), "threads": p.get("num_threads")}
        for p in threadpool_info()
    ]

    def timed(fn: Any) -> tuple[float, int, Any]:
        peak.reset()
        t0, c0 = now(device), time.process_time()
        r = fn()
        t = now(device) - t0
        cpu.append(time.process_time() - c0)
        return t, peak.bytes(), r

    cpu: list[float] = []

    if case["variant"] == "ours":
        from vecaf_bench_plugins.selectors.kmeans import KMeans, lloyd, seed_centres

        ctx = make_context("kmeans", KMeans(), feats, device, None)
        KMeans(n_init=1, max_iter=2, tol=0.0).select(make_context("kmeans", KMeans(), feats[:WARM_ROWS], device, None),
                                                      min(k, 20))  # fmt: skip
        passes = CountPasses()
        sel = KMeans(n_init=1, max_iter=iters, tol=0.0, init="k-means++")
        t, mem, _ = timed(lambda: sel.select(ctx, k))
        out["end_to_end"] = {"seconds": t, "peak_bytes": mem, "iterations": passes.calls - 1}
        x = ctx.features_tensor()
        start = seed_centres(x, k, np.random.default_rng(0), True)
        np.save(start_path, start.cpu().numpy())
        passes.calls = 0
        t, mem, (_, _, inertia) = timed(lambda: lloyd(x, start, iters, 0.0, 4096))
        out["lloyd"] = {"seconds": t, "peak_bytes": mem, "iterations": passes.calls - 1, "inertia": inertia}
    else:
        from sklearn.cluster import KMeans as SkKMeans

        SkKMeans(n_clusters=min(k, 20), n_init=1, max_iter=2, random_state=0).fit(feats[:WARM_ROWS])

        def fit(init: Any) -> Any:
            return SkKMeans(n_clusters=k, n_init=1, max_iter=iters, tol=0.0, init=init, algorithm="lloyd",
                            random_state=0).fit(feats)  # fmt: skip

        t, mem, km = timed(lambda: fit("k-means++"))
        out["end_to_end"] = {"seconds": t, "peak_bytes": mem, "iterations": int(km.n_iter_), "inertia": km.inertia_}
        start = np.load(start_path)
        t, mem, km = timed(lambda: fit(start))
        out["lloyd"] = {"seconds": t, "peak_bytes": mem, "iterations": int(km.n_iter_), "inertia": float(km.inertia_)}
        import sklearn

        out["sklearn"] = sklearn.__version__
    out["end_to_end"]["cpu_seconds"], out["lloyd"]["cpu_seconds"] = cpu
    del limiter
    return out


TASKS = {"select": task_select, "kmeans": task_kmeans}


def worker(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = resolve_device(spec["device"])
    for case in spec["cases"]:
        before = loadavg()
        try:
            result = TASKS[case["task"]](case, device)
        except (ImportError, KeyError) as e:  # a selector module missing or broken: a note, go on
            result = {"skipped": f"not importable: {type(e).__name__}: {e}"}
        result.update(loadavg_before=before, loadavg_after=loadavg(), cpu_pressure_after=cpu_pressure())
        Path(case["result"]).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------------------- parent


def _progress(path: Path) -> tuple[float | None, list[tuple[int, int, float, int, float]]]:
    """(clock start, [(done, total, seconds, peak_bytes, cpu_seconds)]) from a progress file."""
    if not path.exists():
        return None, []
    start, rows = None, []
    for line in path.read_text().splitlines():
        p = line.split()
        if p and p[0] == "start":
            start = float(p[1])
        elif len(p) == 5:
            rows.append((int(p[0]), int(p[1]), float(p[2]), int(p[3]), float(p[4])))
    return start, rows


def from_progress(rows: list[tuple[int, int, float, int, float]], cap: float) -> dict[str, Any]:
    """A selection killed at `cap` seconds: its time extrapolated linearly from the reported units
    (the rate over the second half of the reports), never below the cap."""
    out: dict[str, Any] = {"capped": True, "extrapolated": True, "cap_seconds": cap, "seconds": None}
    if not rows:
        out["note"] = f"killed at the {cap:.0f} s cap before its first progress report"
        return out
    done, total, t1, _, c1 = rows[-1]
    out["peak_bytes"] = max(r[3] for r in rows)
    d0, _, t0, _, c0 = rows[len(rows) // 2]
    if len(rows) >= 2 and done > d0:
        est = t1 + (total - done) * (t1 - t0) / (done - d0)
        out["cpu_seconds"] = c1 + (total - done) * (c1 - c0) / (done - d0)
    else:
        est, out["cpu_seconds"] = t1 * total / max(done, 1), c1 * total / max(done, 1)
    out.update(seconds=max(cap, est), measured_units=done, units=total, reports=len(rows),
               note=f"killed at the {cap:.0f} s cap after {done:,}/{total:,} progress units; the rest at the rate "
                    "of the later reports (linear)")  # fmt: skip
    return out


def run_batch(cases: list[dict[str, Any]], base: dict[str, Any], work: Path) -> None:
    """Run `cases` in one worker process (restarted after a kill), each killed `cap` seconds after its
    clock started; results land in case["out"]."""
    pending = list(cases)
    while pending:
        spec_path = work / f"spec-{time.monotonic_ns()}.json"
        spec_path.write_text(json.dumps(dict(base, cases=pending)))
        err = spec_path.with_suffix(".err")
        with err.open("w") as ef:
            proc = subprocess.Popen([sys.executable, __file__, "--worker", str(spec_path)], stdout=ef, stderr=ef)
            killed: dict[str, Any] | None = None
            t_setup = time.monotonic()
            while proc.poll() is None:
                time.sleep(0.25)
                cur = next((c for c in pending if not Path(c["result"]).exists()), None)
                if cur is None:
                    continue
                start, rows = _progress(Path(cur["progress"]))
                if start is not None and time.monotonic() - start > cur["cap"]:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    killed = from_progress(rows, cur["cap"])
                    killed.update(wall_seconds=time.monotonic() - t_setup, loadavg_at_kill=loadavg())
                    Path(cur["result"]).write_text(json.dumps(killed))
                elif start is None and time.monotonic() - t_setup > base["setup_limit"]:
                    proc.send_signal(signal.SIGKILL)
                    proc.wait()
                    Path(cur["result"]).write_text(json.dumps({"failed": f"setup over {base['setup_limit']} s"}))
                if Path(cur["result"]).exists():
                    t_setup = time.monotonic()
        rc = proc.returncode
        for c in pending:
            r = Path(c["result"])
            if r.exists():
                c["out"] = json.loads(r.read_text())
        left = [c for c in pending if "out" not in c]
        if left and killed is None:  # the worker died: blame the first unfinished case, go on
            tail = " | ".join(err.read_text().strip().splitlines()[-3:])
            left[0]["out"] = {"failed": f"rc {rc}: {tail}"}
            Path(left[0]["result"]).write_text(json.dumps(left[0]["out"]))
            left = left[1:]
        pending = left


def _slope(points: list[tuple[int, float, float | None]]) -> tuple[float, str] | None:
    """The log-log slope of time in N between the two largest N: of the CPU seconds when both have
    them (less moved by others' load on a shared machine than the wall time), else of the wall time."""
    pts = sorted(p for p in points if p[1] > 0)
    if len(pts) < 2 or pts[-1][0] <= pts[-2][0]:
        return None
    (n0, t0, c0), (n1, t1, c1) = pts[-2], pts[-1]
    if c0 and c1:
        return math.log(c1 / c0) / math.log(n1 / n0), f"measured CPU-time slope N={n0:,}->{n1:,}"
    return math.log(t1 / t0) / math.log(n1 / n0), f"measured slope N={n0:,}->{n1:,}"


def project(selector: str, d: int, n: int, done: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Seconds and peak bytes at N = n from the results at smaller N (same selector and d)."""
    rows = [r for r in done if r["selector"] == selector and r["d"] == d and r["n"] < n]
    pts = [(r["n"], r["seconds"], r.get("cpu_seconds")) for r in rows if r.get("seconds")]
    if not pts:
        return None
    n1, t1, _ = max(pts)
    slope = _slope(pts)
    exp, exp_from = slope if slope is not None else (ZOO[selector].exponent, "the card")
    mem = [(r["n"], r["peak_bytes"]) for r in rows if r.get("peak_bytes")]
    m_n, m_b = max(mem) if mem else (n1, None)
    return {
        "seconds": t1 * (n / n1) ** exp,
        "exponent": exp,
        "exponent_from": exp_from,
        "card_seconds": t1 * (n / n1) ** ZOO[selector].exponent,
        "from_n": n1,
        "peak_bytes": None if m_b is None else m_b * n / m_n,
    }


def set_projection(row: dict[str, Any], proj: dict[str, Any]) -> None:
    """A case not run: its time and peak are the projection (and the note says from what)."""
    how = f"x N^{proj['exponent']:.2f} from N={proj['from_n']:,}, {proj['exponent_from']}"
    row.update(seconds=proj["seconds"], peak_bytes=proj["peak_bytes"], projection=proj)
    if row.get("not_run_for", "time") == "time" or "memory_estimate_bytes" not in row:
        cap = row.get("cap_seconds", 0)
        row["note"] = f"not run: projected {proj['seconds']:,.0f} s ({how}) over the {cap:.0f} s cap"
    else:
        row["note"] = (f"not run: estimated {row['memory_estimate_bytes'] / 1e9:.1f} GB over the free "
                       f"{row['memory_free_bytes'] / 1e9:.1f} GB; time projected {how}")  # fmt: skip


def reproject(results: list[dict[str, Any]]) -> None:
    """A selection killed at the cap with fewer than 3 progress reports (none, or units too coarse to
    extrapolate, e.g. usl's kNN pass counted as one of 12): its time from the N scaling of the smaller
    N instead, at least the cap; a case not run: its projection again. Run whenever smaller-N rows
    were added or re-measured."""
    for r in sorted(results, key=lambda r: r["n"]):  # smaller N first: larger N project from them
        if r.get("projected"):
            proj = project(r["selector"], r["d"], r["n"], results)
            if proj is not None:
                set_projection(r, proj)
            continue
        if not r.get("capped") or (r.get("reports") or 0) >= 3:
            continue
        proj = project(r["selector"], r["d"], r["n"], results)
        if proj is None:
            continue
        r.setdefault("progress_seconds", r.get("seconds"))
        r.setdefault("progress_note", r.get("note"))
        r.update(seconds=max(r["cap_seconds"], proj["seconds"]), projection=proj)
        r["note"] = (
            f"{r['progress_note']}; so projected x N^{proj['exponent']:.2f} from N={proj['from_n']:,} "
            f"({proj['exponent_from']})"
            + (f" (the progress alone gave {r['progress_seconds']:,.0f} s)" if r.get("progress_seconds") else "")
        )


def base_bytes(selector: str, n: int, d: int) -> float:
    """Bytes the worker holds before the clock: the pool array, its normalised tensor, the outputs."""
    b = 2.0 * n * d * 4
    if selector in MODEL_BASED:
        b += n * d * 4 + n * CLASSES * 4 * (2 + ZOO[selector].mc)
    return b


def zoo_cases(args: argparse.Namespace, work: Path, results: list[dict[str, Any]], base: dict[str, Any]) -> None:
    names = [s for s in args.selectors if s in ZOO]
    made: dict[tuple[int, int, int], Path] = {}

    def pool(n: int, d: int, seed: int) -> Path:
        if (n, d, seed) not in made:
            for key in [k for k in made if k[:2] != (n, d)]:  # one pool size on disk at a time
                made.pop(key).unlink(missing_ok=True)
            path = work / f"feats-{n}-{d}-{seed}.npy"
            t0 = time.perf_counter()
            make_features(path, n, d, seed=seed)
            print(f"  pool N={n:,} d={d} seed {seed}: {n * d * 4 / 1e9:.2f} GB in {time.perf_counter() - t0:.1f} s",
                  flush=True)  # fmt: skip
            made[(n, d, seed)] = path
        return made[(n, d, seed)]

    for n in sorted(args.n):
        for d in args.d:
            reproject(results)
            count = max(1, int(args.budget * n))
            print(f"[N={n:,} d={d} B={count:,}] load {loadavg()}", flush=True)
            batch: list[dict[str, Any]] = []
            for name in names:
                row: dict[str, Any] = {"selector": name, "n": n, "d": d, "count": count, "device": args.device,
                                       "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}  # fmt: skip
                at_target = (n, d, count) == (TARGETS["n"], TARGETS["d"], TARGETS["count"])
                target = name in TARGETS["selectors"] and at_target
                cap = max(args.cap, 2 * TARGETS["seconds"]) if target else args.cap
                proj = project(name, d, n, results)
                avail = _meminfo_bytes("MemAvailable") or 0
                if args.device != "cpu" and torch.cuda.is_available():
                    avail = torch.cuda.mem_get_info()[0]
                mem_est = base_bytes(name, n, d) + ((proj or {}).get("peak_bytes") or 0)
                if n > args.always_run_n and proj and (proj["seconds"] > cap or mem_est > 0.8 * avail):
                    row.update(projected=True, extrapolated=True, cap_seconds=cap, memory_estimate_bytes=mem_est,
                               memory_free_bytes=avail, not_run_for="time" if proj["seconds"] > cap else "memory")
                    set_projection(row, proj)
                    results.append(row)
                    print(f"  {name}: {row['note']}", flush=True)
                    continue
                cdir = work / f"{name}-{n}-{d}"
                cdir.mkdir(exist_ok=True)
                row.update(cap_seconds=cap, target=target)
                row["case"] = {
                    "task": "select",
                    "selector": name,
                    "features": str(pool(n, d, 0)),
                    "embeddings": str(pool(n, d, 1)) if name in MODEL_BASED else None,
                    "count": count,
                    "cap": cap,
                    "repeats": args.repeats,
                    "repeat_under": args.repeat_under,
                    "options": args.options.get(name, {}),
                    "progress": str(cdir / "progress.txt"),
                    "result": str(cdir / "result.json"),
                }
                batch.append(row)
            size = args.batch or max(1, len(batch))
            chunks = [batch[i : i + size] for i in range(0, len(batch), size)]
            for chunk in chunks:
                run_batch([r["case"] for r in chunk], base, work)
                for r in chunk:
                    case = r.pop("case")
                    r.update(case["out"])
                    r["options"] = r.get("options", case["options"])
                    results.append(r)
                    _say(r)


def _say(r: dict[str, Any]) -> None:
    if "skipped" in r or "failed" in r:
        print(f"  {r['selector']}: {r.get('skipped') or r.get('failed')}", flush=True)
        return
    s = r.get("seconds")
    how = " (extrapolated: " + r.get("note", "") + ")" if r.get("extrapolated") else ""
    print(f"  {r['selector']}: {s if s is None else round(s, 3)} s, peak +{_mb(r.get('peak_bytes'))}{how}", flush=True)


def kmeans_cases(args: argparse.Namespace, work: Path, base: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    threads = args.threads or torch.get_num_threads()
    for n in sorted(n for n in args.n if n <= args.kmeans_max_n):
        for d in args.d:
            count = max(1, int(args.budget * n))
            path = work / f"km-{n}-{d}.npy"
            make_features(path, n, d)
            cdir = work / f"km-{n}-{d}"
            cdir.mkdir(exist_ok=True)
            row: dict[str, Any] = {"n": n, "d": d, "count": count, "iterations": args.kmeans_iter, "threads": threads,
                                   "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                   "loadavg_start": loadavg()}  # fmt: skip
            for variant in ("ours", "sklearn"):  # ours first: it writes the shared k-means++ start
                case = {"task": "kmeans", "variant": variant, "features": str(path), "count": count,
                        "iterations": args.kmeans_iter, "threads": threads, "start": str(cdir / "start.npy"),
                        "cap": 10 * args.cap, "progress": str(cdir / f"{variant}.progress"),
                        "result": str(cdir / f"{variant}.json")}  # fmt: skip
                run_batch([case], base, work)
                row[variant] = case["out"]
            o, s = row["ours"], row["sklearn"]
            if "end_to_end" in o and "end_to_end" in s:
                for part in ("end_to_end", "lloyd"):
                    row[f"{part}_ratio"] = o[part]["seconds"] / s[part]["seconds"]
                    its = (o[part]["iterations"], s[part]["iterations"])
                    row[f"{part}_per_iteration_ratio"] = (o[part]["seconds"] / max(its[0], 1)) / (
                        s[part]["seconds"] / max(its[1], 1)
                    )
            path.unlink(missing_ok=True)
            rows.append(row)
            print(f"  kmeans vs sklearn N={n:,} d={d} K={count:,}: ours {_sec(o, 'end_to_end')} / sklearn "
                  f"{_sec(s, 'end_to_end')} end to end, Lloyd alone {_sec(o, 'lloyd')} / {_sec(s, 'lloyd')}",
                  flush=True)  # fmt: skip
    return rows


def _sec(res: dict[str, Any], part: str) -> str:
    if part not in res:
        return res.get("failed") or res.get("skipped") or "?"
    return f"{res[part]['seconds']:.3g} s ({res[part]['iterations']} its)"


# ----------------------------------------------------------------------------------- GPU projection


def gpu_projection(results: list[dict[str, Any]], kmeans_rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Projected seconds of each feature-only selector at the issue's GPU target on one H100, from
    FLOP and byte counts (H100 rates of selection_speed.py, gpu-anchors.md) and, for what the counts
    do not cover, the per-step host overheads. Not measured: a projection."""
    n, d, b = GPU_TARGET["n"], GPU_TARGET["d"], GPU_TARGET["count"]
    fp32, bf16, bw = H100["fp32_flops"], H100["bf16_flops"], H100["hbm_bytes_per_s"]
    step = H100["kcenter_pick_overhead_s"]
    pool_read = n * d * 4 / bw  # one pass over the fp32 pool
    matvec = pool_read + 5 * n * 4 / bw + step  # a k-center / k-means++ step (selection_speed's model)

    def lloyd_s(k: int, iters: float) -> float:
        return iters * (2.0 * n * k * d / fp32 + 2 * pool_read + n * k * 4 * 2 / bw)

    def its(name: str, default: float) -> tuple[float, str]:
        """Lloyd iterations the selector ran at the largest N measured here (assign passes - 1 per run)."""
        rs = [r for r in results if r["selector"] == name and r.get("kmeans_assign_passes")
              and not r.get("extrapolated")]  # fmt: skip
        if not rs:
            return default, "assumed"
        r = max(rs, key=lambda r: (r["n"], r["d"]))
        return float(r["kmeans_assign_passes"]), f"as measured at N={r['n']:,} d={r['d']}"

    out: dict[str, dict[str, Any]] = {}
    out["random"] = {"seconds": 0.01, "basis": "a permutation of N on the host"}
    out["coreset"] = {"seconds": ANCHORS["kcenter_fp32_s"], "basis": "measured on an H100 (gpu-anchors.md): "
                      f"fp32 {ANCHORS['kcenter_fp32_s']} s, bf16 option {ANCHORS['kcenter_bf16_s']} s"}  # fmt: skip
    km_passes, km_from = its("kmeans", 3 * 101)
    out["kmeans"] = {
        "seconds": 3 * b * matvec + lloyd_s(b, km_passes),
        "basis": f"3 restarts x (k-means++: {b:,} matvecs) + {km_passes:.0f} assign passes ({km_from}) of "
        f"2 N K d FLOP at fp32 {fp32 / 1e12:.0f} TFLOP/s; tf32 would be ~6x faster on the Lloyd part",
    }
    a = projection(n, d, b)["activeft_300_plus_mapping_s"]
    out["activeft"] = {"seconds": a["fp32"], "basis": f"selection_speed.py's projection: fp32 {a['fp32']:.0f} s, "
                       f"tf32 {a['tf32']:.0f} s, bf16 (B padded x128) {a['bf16_B_padded_x128']:.0f} s"}  # fmt: skip
    k_t = min(b, 500)
    tp_passes, tp_from = its("typiclust", 101)
    typ = 2.0 * n * n * d / k_t / fp32
    out["typiclust"] = {
        "seconds": k_t * matvec + lloyd_s(k_t, tp_passes) + typ + k_t * 1e-3,
        "basis": f"k-means K={k_t} ({tp_passes:.0f} passes, {tp_from}) + typicality 2 N^2 d / K FLOP "
        f"({typ:.2f} s) + ~1 ms host work per cluster",
    }
    graph = 1.0 * n * n * d / bf16 + n * n * 2 * 2 / bw  # each pair once (N^2 d FLOP), bf16, block written+read
    k_p = 1000
    out["probcover"] = {
        "seconds": graph + k_p * matvec + lloyd_s(k_p, 50) + 5000 * n * d * 2 / fp32 + 1.0,
        "basis": f"graph N^2 d FLOP in bf16 (auto on CUDA) {graph:.1f} s + pseudo-label k-means (k = 1,000 "
        "ImageNet classes, 50 iterations) + the purity sample + ~1 s for the edges and the greedy",
    }
    cores = max(1, round(0.005 * n))
    a_c = projection(n, d, cores)["activeft_300_plus_mapping_s"]
    out["bilaf"] = {
        "seconds": a_c["fp32"] + 2.0 * n * cores * d / fp32 + 2.0 * n * n * d / cores / fp32 + cores * 2e-3,
        "basis": f"ActiveFT with K = {cores:,} cores (fp32 {a_c['fp32']:.0f} s, tf32 {a_c['tf32']:.0f} s) + "
        "assignment + "
        "denoising/boundary O(N^2 d / K) + ~2 ms host work per pseudo-class",
    }
    mh = [r for r in results if r["selector"] == "maxherding" and r.get("stats", {}).get("gain_evaluations")
          and not r.get("stats", {}).get("subsampled")]  # fmt: skip
    from vecaf_bench_plugins.selectors.maxherding import AUTO_ROWS  # its default: at most this many R and C

    rows = min(n, AUTO_ROWS)
    if mh:  # the lazy greedy: C first gains, then some refreshes per pick (measured: about constant in N)
        r = max(mh, key=lambda r: (r["n"], r["d"]))
        per_pick = (r["stats"]["gain_evaluations"] - r["stats"].get("candidates", r["n"])) / r["count"]
        evals_from = f"C first gains + {per_pick:,.0f} refreshed gains per pick (measured at N={r['n']:,} d={r['d']})"
    else:
        per_pick, evals_from = 0.06 * rows, "C first gains + the card's 6% of the candidates per pick"
    evals = rows + per_pick * b
    mh_s = 2.0 * rows * d * evals / fp32 + evals * rows * 4 * 2 / bw + b * step
    out["maxherding"] = {"seconds": mh_s, "basis": f"the default auto subsets: R = C = {rows:,} rows; {evals_from}: "
                         "2 R d FLOP per gain at fp32 + the kernel written and read once; more if the refreshes "
                         "per pick grow with B / C"}  # fmt: skip
    usl_passes, usl_from = its("usl", 101)
    knn = 2.0 * n * n * d / fp32 + n * n * 4 * 2 / bw
    out["usl"] = {
        "seconds": knn + b * matvec + lloyd_s(b, usl_passes + 10),
        "basis": f"kNN density 2 N^2 d FLOP fp32 ({knn:.0f} s) + k-means K = B ({usl_passes:.0f} passes, {usl_from}) "
        "+ 10 regulariser passes O(N K d)",
    }
    for v in out.values():
        v["pass_60s"] = v["seconds"] <= 60.0
    return {
        "target": {"n": n, "d": d, "count": b, "seconds": 60.0, "gpu": "one H100"},
        "measured": False,
        "rates": {k: H100[k] for k in ("fp32_flops", "bf16_flops", "tf32_flops", "hbm_bytes_per_s")},
        "selectors": out,
    }


# -------------------------------------------------------------------------------------- markdown


def _secs(r: dict[str, Any]) -> str:
    if "skipped" in r:
        return "skipped"
    if "failed" in r:
        return "failed"
    s = r.get("seconds")
    if s is None:
        return f"> {r.get('cap_seconds', 0):.0f}"
    txt = f"{s:.3g}" if s < 100 else f"{s:,.0f}"
    return ("~" + txt) if r.get("extrapolated") else txt


def _cpu(r: dict[str, Any]) -> str:
    c = r.get("cpu_seconds")
    if c is None or r.get("projected") or r.get("projection"):
        return ""
    return ("~" if r.get("extrapolated") else "") + (f"{c:.3g}" if c < 100 else f"{c:,.0f}")


def _load1(r: dict[str, Any]) -> str:
    """The 1-minute load average when the case started (or when it was killed)."""
    return (r.get("loadavg_before") or r.get("loadavg_at_kill") or "").split(" ")[0]


def _how(r: dict[str, Any]) -> str:
    if "skipped" in r or "failed" in r:
        return r.get("skipped") or r.get("failed") or ""
    if r.get("note"):
        return r["note"]
    return f"measured (best of {r.get('runs', 1)})" if r.get("runs", 1) > 1 else "measured"


def target_lines(results: list[dict[str, Any]], kmeans_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    lines = []
    for name in TARGETS["selectors"]:
        r = next((r for r in results if r["selector"] == name and (r["n"], r["d"], r["count"]) ==
                  (TARGETS["n"], TARGETS["d"], TARGETS["count"]) and r["device"] == "cpu"), None)  # fmt: skip
        if r is None:
            continue
        s = r.get("seconds")
        ok = s is not None and not r.get("extrapolated") and s < TARGETS["seconds"]
        lines.append({"what": f"{name} at N = 100,000, d = 384, B = 1,000 under 120 s on this CPU",
                      "value": _secs(r) + " s", "pass": bool(ok)})  # fmt: skip
    for k in kmeans_rows:
        for part, label in (("end_to_end", "end to end (seeding + Lloyd)"), ("lloyd", "Lloyd alone, same start")):
            if f"{part}_ratio" in k:
                lines.append({"what": f"kmeans / scikit-learn time, {label}, N = {k['n']:,}, d = {k['d']}, "
                              f"K = {k['count']:,}, {k['iterations']} iterations",
                              "value": f"{k[f'{part}_ratio']:.2f}", "pass": k[f"{part}_ratio"] <= 1.0})  # fmt: skip
    return lines


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    where = m["gpu"] or f"{m['cpu']}, {m['cpu_cores_usable']} cores, {m['memory_gb']} GB RAM, no GPU"
    lines = [
        f"Machine: {where}; torch {m['torch']}, {m['torch_threads']} torch threads, scikit-learn "
        f"{result['versions'].get('sklearn')}, device `{m['device']}`; {result['date']}; load average "
        f"{result['loadavg_start']} (start) / {result['loadavg_end']} (end).",
        "Commands (merged with `--merge`): " + "; ".join(f"`{c}`" for c in result["commands"]),
        "",
        "Pool: synthetic clustered, L2-normalised float32 features (selection_speed.py's generator, seed 0), "
        f"B = {result['config']['budget']:.0%} of N, every selector with its default options. Model-based "
        f"selectors read synthetic outputs (C = {CLASSES} classes, D = d embeddings, T = {MC_SAMPLES} MC draws) "
        "cached before the clock: **no forward pass is in these times**. Seconds: one `select` in a fresh "
        "process after a warm-up (best of the runs when short); `~` = extrapolated (killed at the cap: "
        "from its progress; not run: projected from the smaller N, column 'how'). CPU s: the process's CPU "
        "time over the select (all threads), less moved by other jobs on a shared machine than the wall "
        "time (column 'load before': the 1-minute load average when the case started; 2 cores). Peak: rise "
        "of the peak RSS (CPU) / max_memory_allocated (CUDA) above the pool array and the served outputs "
        "(rises of a few MB are allocator noise).",
        "",
        "| selector | N | d | B | seconds | CPU s | peak | reads | cost (card) | how | load before |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(result["zoo"], key=lambda r: (list(ZOO).index(r["selector"]), r["n"], r["d"])):
        e = ZOO[r["selector"]]
        lines.append(
            f"| {r['selector']} | {r['n']:,} | {r['d']} | {r['count']:,} | {_secs(r)} | {_cpu(r)} | "
            f"{_mb(r.get('peak_bytes'))} | "
            f"{e.reads} | {e.cost} | {_how(r)} | {_load1(r)} |"
        )
    for k, why in NOT_IN_ZOO.items():
        lines.append(f"| {k} | | | | not measured | | | | | {why} | |")
    if result["kmeans"]:
        lines += [
            "",
            f"kmeans against scikit-learn's KMeans (`n_init=1, max_iter={result['config']['kmeans_iter']}, tol=0, "
            "init='k-means++', algorithm='lloyd'`), K = B, the same array, torch and scikit-learn's thread pools "
            "at the same count; end to end includes each one's k-means++ seeding (scikit-learn's is greedy, "
            "2 + ln K candidates per centre); 'Lloyd alone' starts both from the same centres:",
            "",
            "| N | d | K | threads | ours, end to end | sklearn, end to end | ratio | ours, Lloyd alone | "
            "sklearn, Lloyd alone | ratio | per-iteration ratio (Lloyd) | peak ours / sklearn (Lloyd) | load |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for k in result["kmeans"]:
            o, s = k["ours"], k["sklearn"]
            if "lloyd" not in o or "lloyd" not in s:
                lines.append(f"| {k['n']:,} | {k['d']} | {k['count']:,} | {k['threads']} | {_sec(o, 'x')} | "
                             f"{_sec(s, 'x')} | | | | | | | |")  # fmt: skip
                continue
            lines.append(
                f"| {k['n']:,} | {k['d']} | {k['count']:,} | {k['threads']} | {_sec(o, 'end_to_end')} | "
                f"{_sec(s, 'end_to_end')} | {k['end_to_end_ratio']:.2f} | {_sec(o, 'lloyd')} | {_sec(s, 'lloyd')} | "
                f"{k['lloyd_ratio']:.2f} | {k['lloyd_per_iteration_ratio']:.2f} | "
                f"{_mb(o['lloyd']['peak_bytes'])} / {_mb(s['lloyd']['peak_bytes'])} | "
                f"{' '.join((k.get('loadavg_start') or '').split()[:3])} |"
            )
    tl = result["targets"]
    if tl:
        lines += ["", "Targets:", ""]
        lines += [f"- {t['what']}: {t['value']}: **{'pass' if t['pass'] else 'FAIL'}**" for t in tl]
    g = result["gpu_projection"]
    t = g["target"]
    lines += [
        "",
        f"GPU projection (**not measured**: no GPU here): the issue's target is every feature-only selector at "
        f"N = {t['n']:,}, d = {t['d']}, B = {t['count']:,} within {t['seconds']:.0f} s on {t['gpu']}. Projected "
        f"from FLOP and byte counts at fp32 {g['rates']['fp32_flops'] / 1e12:.0f} TFLOP/s (assumed), bf16 "
        f"{g['rates']['bf16_flops'] / 1e12:.0f} TFLOP/s and HBM {g['rates']['hbm_bytes_per_s'] / 1e12:.1f} TB/s "
        "(gpu-anchors.md), with the iteration and evaluation counts measured here where the card leaves them open; "
        "Python/launch overheads beyond a per-step allowance are not modelled, so these are optimistic. Record it "
        "on a GPU with `python benchmarks/zoo_speed.py --device cuda --n 1281167 --d 768 --cap 60 --no-kmeans "
        "--merge`.",
        "",
        "| selector | projected H100 seconds | within 60 s | basis |",
        "|---|---|---|---|",
    ]
    for name, p in g["selectors"].items():
        s = p["seconds"]
        lines.append(f"| {name} | ~{s:.3g} | {'yes' if p['pass_60s'] else 'no'} | {p['basis']} |" if s < 1000
                     else f"| {name} | ~{s:,.0f} | no | {p['basis']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--d", type=int, nargs="+", default=[384, 768])
    ap.add_argument("--budget", type=float, default=0.01, help="B as a fraction of N")
    ap.add_argument("--selectors", nargs="+", default=list(ZOO), help="a subset of: " + " ".join(ZOO))
    ap.add_argument("--options", type=json.loads, default={}, help='JSON {"selector": {option: value}}')
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch (and scikit-learn) threads; default: torch's")
    ap.add_argument("--cap", type=float, default=300.0, help="seconds a selection may run before it is killed")
    ap.add_argument("--always-run-n", type=int, default=100_000, help="above it, run only what projects under the cap")
    ap.add_argument("--repeats", type=int, default=3, help="selects per case while they take under --repeat-under s")
    ap.add_argument("--repeat-under", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=1, help="cases per worker process (0: all of one N x d)")
    ap.add_argument("--setup-limit", type=float, default=1800.0, help="seconds a worker may take before the clock")
    ap.add_argument("--kmeans-iter", type=int, default=25)
    ap.add_argument("--kmeans-max-n", type=int, default=100_000, help="the sklearn comparison up to this N")
    ap.add_argument("--no-kmeans", action="store_true", help="skip the scikit-learn comparison")
    ap.add_argument("--no-zoo", action="store_true", help="only the scikit-learn comparison")
    ap.add_argument("--merge", action="store_true", help="keep the earlier file's rows that this run does not redo")
    ap.add_argument("--quick", action="store_true", help="smoke run: N=2,000, d=384, one worker, cap 20 s, no files")
    ap.add_argument("--out", default=None, help="results folder (default benchmarks/results; --quick: none)")
    ap.add_argument("--tag", default=None)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.worker)
    if args.quick:
        args.n, args.d, args.cap, args.batch, args.repeats, args.kmeans_iter = [2000], [384], 20.0, 0, 1, 10
    unknown = [s for s in args.selectors if s not in ZOO]
    if unknown:
        ap.error(f"unknown selectors {unknown}; the zoo: {' '.join(ZOO)}")
    if args.threads:  # before the machine facts: they record the thread count
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    args.device, facts = str(device), machine_facts(device)
    tag = args.tag or machine_tag(facts)
    import sklearn
    import threadpoolctl

    versions = {"sklearn": sklearn.__version__, "threadpoolctl": threadpoolctl.__version__, "torch": torch.__version__}
    print(f"zoo speed on {facts['gpu'] or facts['cpu']} ({device}), {facts['torch_threads']} torch threads; "
          f"load {loadavg()}", flush=True)  # fmt: skip
    for name in args.selectors:
        try:
            selector_class(name)
        except (ImportError, KeyError) as e:
            print(f"  note: {name} not importable now ({type(e).__name__}: {e}); its cases will be skipped", flush=True)
    start_load = loadavg()
    base = {"device": args.device, "threads": args.threads, "setup_limit": args.setup_limit}
    zoo: list[dict[str, Any]] = []
    km: list[dict[str, Any]] = []
    out_dir = Path(args.out) if args.out else (None if args.quick else ROOT / "benchmarks" / "results")
    stem = f"zoo_speed-{tag}"
    earlier = out_dir / f"{stem}.json" if out_dir else None
    old = json.loads(earlier.read_text()) if args.merge and earlier and earlier.exists() else None
    if old and old.get("machine", {}).get("cpu") != facts["cpu"]:  # never one table from two machines
        print(f"  note: {earlier} was measured on {old['machine'].get('cpu')}, this is {facts['cpu']}: "
              "not merged (its rows are replaced)", flush=True)
        old = None
    if old:  # earlier rows inform the projections of this run
        zoo = [r for r in old["zoo"] if r["device"] == args.device]
    with tempfile.TemporaryDirectory(prefix="vecaf-zoo-speed-") as tmp:
        work = Path(tmp)
        if not args.no_zoo:
            keep = [r for r in zoo if not (r["n"] in args.n and r["d"] in args.d and r["selector"] in args.selectors)]
            zoo = keep
            zoo_cases(args, work, zoo, base)
        if not args.no_kmeans:
            km = kmeans_cases(args, work, base)
    command = "python benchmarks/zoo_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    commands = [command]
    if old:
        commands = old.get("commands", []) + commands
        zoo = zoo + [r for r in old["zoo"] if r["device"] != args.device]
        redo = {(k["n"], k["d"]) for k in km}
        km = [k for k in old.get("kmeans", []) if (k["n"], k["d"]) not in redo] + km
        km.sort(key=lambda k: (k["n"], k["d"]))
    result = {
        "benchmark": "zoo_speed",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commands": commands,
        "machine": facts,
        "versions": versions,
        "config": {"budget": args.budget, "cap_seconds": args.cap, "always_run_n": args.always_run_n,
                   "kmeans_iter": args.kmeans_iter, "classes": CLASSES, "mc_samples": MC_SAMPLES,
                   "mc_dropout": MC_DROPOUT, "warm_rows": WARM_ROWS, "options": args.options,
                   "features": "clustered (1000 clusters, Dirichlet(2) sizes, cos to centre ~0.78), "
                               "L2-normalised float32, seed 0 (embeddings: seed 1)"},  # fmt: skip
        "zoo": zoo,
        "not_in_zoo": NOT_IN_ZOO,
        "kmeans": km,
        "loadavg_start": start_load,
        "loadavg_end": loadavg(),
        "cpu_pressure_end": cpu_pressure(),
    }
    reproject(zoo)
    result["targets"] = target_lines(zoo, km)
    result["gpu_projection"] = gpu_projection(zoo, km)
    md = markdown(result)
    if out_dir is not None:  # written before anything is printed: a closed pipe must not lose a run
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
        (out_dir / f"{stem}.md").write_text(f"# Selector zoo: speed and memory ({tag})\n\n{md}")
    print()
    print(md)
    if out_dir is not None:
        print(f"written: {out_dir / stem}.json, .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
