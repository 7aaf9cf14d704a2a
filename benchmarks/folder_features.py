"""Feature extraction on an image folder, as `vecaf-bench select --dataset DIR` does it: the
pipeline against the backbone's raw forward rate, the cache, and an interrupted extraction resumed.

Measures (see benchmarks/README.md, "Feature extraction on an image folder"):

1. raw forward rate: the folder's images decoded and transformed into uint8 batches in memory (not
   timed), then only normalize + embed timed under `torch.inference_mode`, channels_last as `select`;
2. the folder pipeline: `selectfolder.folder_features` into a fresh cache (PNG decoding, transforms,
   DataLoader, forward, rows written into the memory-mapped partial file and flushed every 4,096 rows);
3. their ratio, beside the loader alone (decode + transform + collate) and the bound a serial loader
   puts on it, 1 / (1 + raw / loader), on saturated cores;
4. the second call: the cache reused;
5. resume: `vecaf-bench select` in a subprocess, interrupted with SIGINT (Ctrl-C) and with SIGKILL
   (a crash, the power) part-way, then the same command again: the row it continued at, the rows it
   computed, its time against an uninterrupted extraction, and that the features equal it.

    python benchmarks/folder_features.py [--folder DIR] [--image-size 64] [--batch-size 64]
        [--num-workers 0] [--device auto] [--out benchmarks/results]

Without --folder it writes examples/animal_folders.py's unlabelled folder with `--pool 1000 --mirror` (20,000
silhouettes as PNG files, from the animal-mnist package: pip install --no-deps animal-mnist) into a
temporary folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
sys.path.insert(0, str(ROOT / "examples"))

from feature_throughput import cpu_pressure, machine_facts, machine_tag, pretransform, raw_forward  # noqa: E402

from vecaf_bench.device import resolve_device  # noqa: E402
from vecaf_bench.pluginmanager import PluginHost  # noqa: E402
from vecaf_bench.run.setup import parse_backbone  # noqa: E402
from vecaf_bench.selectfolder import folder_features, load_image_folder  # noqa: E402
from vecaf_bench.transforms import Normalize, data_config_for, eval_transform  # noqa: E402

RATIO_TARGET = 0.90
BACKBONE = "timm:tf_efficientnet_lite0"


def quiet_console() -> Any:
    from rich.console import Console

    return Console(stderr=True, quiet=True)


def raw_rate(pool: Any, backbone: str, image_size: int, batch_size: int, device: torch.device) -> dict[str, Any]:
    prefix, name = parse_backbone(backbone)
    bb = PluginHost([]).backbones().get(prefix).factory(name, weights="default")
    torch.manual_seed(0)
    model = bb.create_model(2).to(device, memory_format=torch.channels_last).eval()
    dcfg = data_config_for(bb.data_config, image_size)
    normalize = Normalize(dcfg, device, channels_last=True)
    transform = eval_transform(dcfg)
    t0 = time.perf_counter()
    batches = pretransform(pool.images, transform, batch_size)
    decode_s = time.perf_counter() - t0
    raw_forward(bb, model, batches[:2], normalize)  # warm-up
    raws = [raw_forward(bb, model, batches, normalize) for _ in range(2)]
    best = max(raws, key=lambda r: r["images_per_s"])
    return {"images_per_s": best["images_per_s"], "seconds": best["seconds"], "all": [r["images_per_s"] for r in raws],
            "decode_transform_seconds": decode_s, "loader_images_per_s": len(pool.paths) / decode_s}


def pipeline(pool: Any, cache: Path, args: argparse.Namespace) -> tuple[np.ndarray, dict[str, Any], float]:
    t0 = time.perf_counter()
    feats, info, _ = folder_features(
        pool, backbone=args.backbone, weights="default", image_size=args.image_size, device=args.device,
        cache_dir=str(cache), batch_size=args.batch_size, num_workers=args.num_workers, host=PluginHost([]),
        console=quiet_console(),
    )
    return np.asarray(feats), info, time.perf_counter() - t0


def select_command(folder: Path, cache: Path, out: Path, args: argparse.Namespace) -> list[str]:
    cache.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("vecaf-bench") or str(Path(sys.executable).parent / "vecaf-bench")
    return [exe, "select", "--dataset", str(folder), "--budget", "10", "--selector", "random", "--out", str(out),
            "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--num-workers",
            str(args.num_workers), "--device", args.device, "--cache-dir", str(cache)]


def partial_done(cache: Path) -> tuple[int, float]:
    """(rows the partial file records as whole, when it was written) of the one extraction under CACHE."""
    for p in (cache / "features").glob("*.partial.json"):
        try:
            return int(json.loads(p.read_text())["done"]), p.stat().st_mtime
        except (OSError, ValueError, KeyError):
            pass
    return 0, 0.0


def interrupted(folder: Path, cache: Path, args: argparse.Namespace, how: signal.Signals, at_rows: int,
                rate: float) -> dict[str, Any]:
    """Start `select`, stop it with HOW once at least AT_ROWS rows are on disk (plus half a flush
    more for SIGINT, so that the interrupt falls between two flushes), then run it again."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    out = cache / "picks.csv"
    t0 = time.perf_counter()
    proc = subprocess.Popen(select_command(folder, cache, out, args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    while partial_done(cache)[0] < at_rows:
        if proc.poll() is not None:
            raise RuntimeError(f"select ended before {at_rows} rows:\n{proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.05)
    time.sleep(2048 / rate)  # between two flushes: rows that only an exact save on the way out keeps
    kill_t = time.perf_counter()
    flushed, flushed_at = partial_done(cache)
    rows_at_kill = flushed + int(rate * max(0.0, time.time() - flushed_at))  # estimate: rows past the last flush
    proc.send_signal(how)
    first_out, _ = proc.communicate(timeout=120)
    first_s = kill_t - t0
    saved, _ = partial_done(cache)
    t1 = time.perf_counter()
    again = subprocess.run(select_command(folder, cache, out, args), capture_output=True, text=True, env=env)
    resume_s = time.perf_counter() - t1
    if again.returncode != 0:
        raise RuntimeError(f"the resumed select failed:\n{again.stdout}\n{again.stderr}")
    text = " ".join((again.stdout + again.stderr).split())
    marker = "continuing an interrupted extraction at row "
    start = int(text.split(marker, 1)[1].split(" ", 1)[0].replace(",", "")) if marker in text else 0
    n = len(np.load(next((cache / "features").glob("*.npy")), mmap_mode="r"))
    return {
        "signal": how.name,
        "exit_code": proc.returncode,
        "message": " ".join(first_out.split())[-300:],
        "rows_on_disk_when_signalled": flushed,
        "rows_done_when_signalled_estimate": rows_at_kill,
        "rows_saved": saved,
        "resumed_at_row": start,
        "rows_computed_on_resume": n - start,
        "rows_recomputed_estimate": max(0, rows_at_kill - start),
        "seconds_before_signal": first_s,
        "resume_seconds": resume_s,
    }


def uninterrupted(folder: Path, cache: Path, args: argparse.Namespace) -> float:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    subprocess.run(select_command(folder, cache, cache / "picks.csv", args), check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def markdown(r: dict[str, Any]) -> str:
    m, c, raw, p = r["machine"], r["config"], r["raw"], r["pipeline"]
    where = m["gpu"] or f"{m['cpu']}, {m['cpu_cores_usable']} cores"
    lines = [
        f"Machine: {where}; torch {m['torch']}, {m['torch_threads']} torch threads, device `{m['device']}`.",
        f"Run: {c['backbone']} (shipped weights) on {c['images']:,} PNG files ({c['folder']}), {c['image_size']} px, "
        f"batch {c['batch_size']}, num_workers {c['num_workers']}, channels_last; {r['date']}.",
        "",
        "| measure | value | target | result |",
        "|---|---|---|---|",
        f"| listing and checking the folder (first call) | {r['index_seconds']:.1f} s | | |",
        f"| raw forward (normalize + embed on decoded batches), best of 2 | {raw['images_per_s']:.0f} img/s | | |",
        f"| loader alone (PNG decode + transform + collate) | {raw['loader_images_per_s']:.0f} img/s | | |",
        f"| folder pipeline (`folder_features`, into a fresh cache) | {p['images_per_s']:.0f} img/s "
        f"({p['seconds']:.1f} s) | | |",
        f"| pipeline / raw | {r['ratio']:.1%} | >= {RATIO_TARGET:.0%} | {'pass' if r['ratio_pass'] else 'FAIL'} |",
        f"| bound of a serial loader, 1 / (1 + raw / loader) | {r['ratio_serial_bound']:.1%} | | |",
        f"| second call (cache reused) | {r['cached_seconds'] * 1000:.0f} ms | | |",
        f"| `select` uninterrupted (subprocess, extraction + selection) | {r['uninterrupted_seconds']:.1f} s | | |",
    ]
    for k in r["resume"]:
        sig = k["signal"]
        lines.append(
            f"| {sig} after {k['seconds_before_signal']:.1f} s: rows on disk at the signal / saved / resumed at | "
            f"{k['rows_on_disk_when_signalled']:,} / {k['rows_saved']:,} / {k['resumed_at_row']:,} | | |")
        if sig == "SIGINT":  # saved on the way out: only the batch in flight is computed again
            again = (f"{k['resume_seconds']:.1f} s, {k['rows_computed_on_resume']:,} rows computed: every row done "
                     f"before the interrupt was kept (at most the batch in flight, {c['batch_size']}, again)")
            target = "nothing done recomputed"
        else:  # killed: the rows since the last flush are computed again
            again = (f"{k['resume_seconds']:.1f} s, {k['rows_computed_on_resume']:,} rows computed, about "
                     f"{k['rows_recomputed_estimate']:,} of them again (done after the last flush; estimated from "
                     "the rate)")
            target = "<= 4,096 (the flush interval)"
        lines.append(f"| {sig}: the same command again | {again} | {target} | {'pass' if k['pass'] else 'FAIL'} |")
        lines.append(f"| {sig}: features equal the uninterrupted ones | max abs diff {k['max_abs_diff']:.2g} | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", default=None,
                    help="an image folder (default: 20,000 silhouettes written to a temp dir)")
    ap.add_argument("--backbone", default=BACKBONE)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=64, help="select's default")
    ap.add_argument("--num-workers", type=int, default=0, help="select's default")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--tag", default=None)
    ap.add_argument("--markdown-from", default=None, help="rewrite the .md of a results JSON (no measuring)")
    args = ap.parse_args(argv)
    if args.markdown_from:
        src = Path(args.markdown_from)
        result = json.loads(src.read_text())
        tag = src.stem.split("-", 1)[1]
        src.with_suffix(".md").write_text(f"# Feature extraction on an image folder ({tag})\n\n{markdown(result)}")
        print(markdown(result))
        return 0
    device = resolve_device(args.device)
    args.device = str(device)
    facts = machine_facts(device)
    tag = args.tag or machine_tag(facts)

    with tempfile.TemporaryDirectory(prefix="vecaf-bench-folder-") as tmp_s:
        tmp = Path(tmp_s)
        if args.folder:
            folder = Path(args.folder)
        else:
            from animal_folders import write

            written, _ = write(tmp / "demo", pool=1000, mirror=True)  # every silhouette, and its mirror
            folder = tmp / "demo" / "unlabelled"
            print(f"wrote {written:,} images under {folder}", flush=True)
        t0 = time.perf_counter()
        pool = load_image_folder(folder, cache_dir=str(tmp / "index"))
        index_s = time.perf_counter() - t0
        n = len(pool.paths)
        print(f"{n:,} images listed and checked in {index_s:.1f} s", flush=True)

        raw = raw_rate(pool, args.backbone, args.image_size, args.batch_size, device)
        print(f"raw forward {raw['images_per_s']:.0f} img/s; loader alone {raw['loader_images_per_s']:.0f} img/s",
              flush=True)
        feats, info, pipe_s = pipeline(pool, tmp / "cache-a", args)
        rate = n / info["seconds"]
        print(f"folder pipeline {rate:.0f} img/s ({info['seconds']:.1f} s)", flush=True)
        t0 = time.perf_counter()
        again, info2, _ = pipeline(pool, tmp / "cache-a", args)
        cached_s = time.perf_counter() - t0
        assert info2["cached"] and np.array_equal(again, feats)

        whole_s = uninterrupted(folder, tmp / "cache-b", args)
        print(f"select uninterrupted: {whole_s:.1f} s", flush=True)
        resume = []
        for how in (signal.SIGINT, signal.SIGKILL):
            cache = tmp / f"cache-{how.name.lower()}"
            k = interrupted(folder, cache, args, how, at_rows=min(8192, n // 2), rate=rate)
            resumed = np.load(next((cache / "features").glob("*.npy")), mmap_mode="r")
            k["max_abs_diff"] = float(np.abs(np.asarray(resumed) - feats).max())
            k["pass"] = (k["resumed_at_row"] == k["rows_saved"] > 0 and (
                k["rows_saved"] > k["rows_on_disk_when_signalled"] if how == signal.SIGINT else
                k["rows_recomputed_estimate"] <= 4096) and k["max_abs_diff"] < 1e-3)
            print(f"{how.name}: saved {k['rows_saved']:,}, resumed at {k['resumed_at_row']:,}, "
                  f"{k['rows_computed_on_resume']:,} rows in {k['resume_seconds']:.1f} s", flush=True)
            resume.append(k)

    ratio = rate / raw["images_per_s"]
    result = {
        "benchmark": "folder_features",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": facts,
        "config": {"folder": "animal_folders.py --mirror, unlabelled" if not args.folder else str(args.folder),
                   "images": n, "backbone": args.backbone, "image_size": args.image_size,
                   "batch_size": args.batch_size, "num_workers": args.num_workers},
        "index_seconds": index_s,
        "raw": raw,
        "pipeline": {"images_per_s": rate, "seconds": info["seconds"], "forward_seconds": info.get("forward_seconds")},
        "ratio": ratio,
        "ratio_target": RATIO_TARGET,
        "ratio_pass": ratio >= RATIO_TARGET,
        "ratio_serial_bound": 1.0 / (1.0 + raw["images_per_s"] / raw["loader_images_per_s"]),
        "cached_seconds": cached_s,
        "uninterrupted_seconds": whole_s,
        "resume": resume,
        "cpu_pressure_after": cpu_pressure(),
    }
    md = markdown(result)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"folder_features-{tag}"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(f"# Feature extraction on an image folder ({tag})\n\n{md}")
    print()
    print(md)
    print(f"written: {out / stem}.json, .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
