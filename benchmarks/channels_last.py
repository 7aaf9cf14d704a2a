"""NHWC (channels_last) against NCHW: the speed of what a run does with the backbone, per layout,
in the same process, and how far the two layouts' outputs lie apart.

`train.channels_last` (default true) keeps convolution weights and image batches in NHWC for
training, feature extraction, evaluation and a selector's `pool_outputs`. This benchmark is the
evidence for that default: for each model and image size it times an evaluation forward (batch
64, inference mode) and a training step (batch 32: forward, backward, SGD step) in both layouts,
interleaved (NCHW, NHWC, NCHW, ...) so that machine load hits both alike, and reports the median
of `--repeats` timings and the ratio NCHW / NHWC (above 1: NHWC is faster). On CUDA the training
step runs under bf16 autocast, as a run does. The models are built with random weights (the
timing does not depend on them) and reach no network.

    python benchmarks/channels_last.py [--models tf_efficientnet_lite0 resnet18 convnext_atto]
                                       [--sizes 32 64] [--repeats 7] [--device auto] [--out benchmarks/results]

Results go to `benchmarks/results/channels_last-<machine>.json` and `.md` (machine tag as in the
other benchmarks: `cpu-<N>core` or the GPU's name).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import timm
import torch
from machine import cpu_model  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parent.parent


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _eval_once(model: torch.nn.Module, x: torch.Tensor) -> float:
    _sync(x.device)
    t = time.perf_counter()
    with torch.inference_mode():
        model(x)
    _sync(x.device)
    return time.perf_counter() - t


def _train_once(model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    _sync(x.device)
    t = time.perf_counter()
    opt.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    _sync(x.device)
    return time.perf_counter() - t


def _layouts(name: str, size: int, device: torch.device) -> dict[str, Any]:
    """Both layouts of one model, built from one state so that their outputs can be compared."""
    torch.manual_seed(0)
    base = timm.create_model(name, pretrained=False, num_classes=10)
    state = {k: v.clone() for k, v in base.state_dict().items()}
    out: dict[str, Any] = {}
    for layout, fmt in (("nchw", torch.contiguous_format), ("nhwc", torch.channels_last)):
        m = timm.create_model(name, pretrained=False, num_classes=10)
        m.load_state_dict(state)
        m = m.to(device, memory_format=fmt)
        g = torch.Generator().manual_seed(1)
        xe = torch.randn(64, 3, size, size, generator=g).to(device).contiguous(memory_format=fmt)
        xt = torch.randn(32, 3, size, size, generator=g).to(device).contiguous(memory_format=fmt)
        yt = torch.randint(0, 10, (32,), generator=g).to(device)
        out[layout] = {"model": m, "xe": xe, "xt": xt, "yt": yt,
                       "opt": torch.optim.SGD(m.parameters(), lr=1e-3, momentum=0.9)}
    return out


def measure(name: str, size: int, repeats: int, device: torch.device) -> dict[str, Any]:
    pair = _layouts(name, size, device)
    with torch.inference_mode():
        a = pair["nchw"]["model"].eval()(pair["nchw"]["xe"]).float()
        b = pair["nhwc"]["model"].eval()(pair["nhwc"]["xe"]).float()
    max_abs = float((a - b).abs().max())
    same_argmax = float((a.argmax(1) == b.argmax(1)).float().mean())
    times: dict[str, dict[str, list[float]]] = {k: {"eval": [], "train": []} for k in pair}
    for p in pair.values():  # warm-up: one of each, not timed (kernel selection, allocator)
        _eval_once(p["model"].eval(), p["xe"])
        _train_once(p["model"].train(), p["opt"], p["xt"], p["yt"])
    for _ in range(repeats):
        for k, p in pair.items():
            times[k]["eval"].append(_eval_once(p["model"].eval(), p["xe"]))
            times[k]["train"].append(_train_once(p["model"].train(), p["opt"], p["xt"], p["yt"]))
    med = {k: {w: statistics.median(v) for w, v in d.items()} for k, d in times.items()}
    return {
        "model": name,
        "image_size": size,
        "eval_batch_s": med,
        "eval_ratio_nchw_over_nhwc": med["nchw"]["eval"] / med["nhwc"]["eval"],
        "train_ratio_nchw_over_nhwc": med["nchw"]["train"] / med["nhwc"]["train"],
        "eval_max_abs_logit_diff": max_abs,
        "eval_same_argmax": same_argmax,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["tf_efficientnet_lite0", "resnet18", "convnext_atto"])
    ap.add_argument("--sizes", nargs="+", type=int, default=[32, 64])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if device.type == "cuda":
        machine = torch.cuda.get_device_name(device)
        tag = machine.lower().replace("nvidia ", "").replace(" ", "-")
    else:
        machine = f"{cpu_model()} ({torch.get_num_threads()} threads)"
        tag = f"cpu-{os.cpu_count()}core"
    rows = []
    for name in args.models:
        for size in args.sizes:
            row = measure(name, size, args.repeats, device)
            rows.append(row)
            print(f"{name:24s} {size:4d}px  eval x{row['eval_ratio_nchw_over_nhwc']:.2f}  "
                  f"train x{row['train_ratio_nchw_over_nhwc']:.2f}  max |dlogit| {row['eval_max_abs_logit_diff']:.1e}",
                  flush=True)
    record = {
        "benchmark": "channels_last",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "platform": platform.platform(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "device": str(device),
        "repeats": args.repeats,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"channels_last-{tag}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        f"# channels_last vs NCHW on {machine}",
        "",
        f"{record['date']}, torch {torch.__version__}, timm {timm.__version__}, median of {args.repeats}, "
        "interleaved. Ratio = NCHW time / NHWC time (above 1: NHWC faster). Eval: batch 64 forward in "
        "inference mode; train: batch 32 forward + backward + SGD step"
        + (" under bf16 autocast." if device.type == "cuda" else "."),
        "",
        "| model | px | eval NCHW s | eval NHWC s | eval ratio | train NCHW s | train NHWC s | train ratio "
        "| max abs logit diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        t = r["eval_batch_s"]
        lines.append(
            f"| {r['model']} | {r['image_size']} | {t['nchw']['eval']:.4f} | {t['nhwc']['eval']:.4f} | "
            f"{r['eval_ratio_nchw_over_nhwc']:.2f} | {t['nchw']['train']:.4f} | {t['nhwc']['train']:.4f} | "
            f"{r['train_ratio_nchw_over_nhwc']:.2f} | {r['eval_max_abs_logit_diff']:.1e} |"
        )
    (args.out / f"channels_last-{tag}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out / f'channels_last-{tag}.json'}")


if __name__ == "__main__":
    main()
