"""Time to an answer: how long `vecaf-bench` takes to refuse a bad argument, to `list` and to print
`--help`, against the interpreter's own start and the cost of importing torch, in the same run.

Targets (issue 15, item 7): an argument or config error in under 2 s, `vecaf-bench list` in
under 5 s. Each command runs `--repeats` times (default 3, interleaved with the references) in a
fresh process from a scratch folder, and the median wall time is judged. One more run of each
under `python -X importtime` records whether torch and timm were imported and the slowest
top-level imports, which says where the time goes when a target is missed.

    python benchmarks/startup_time.py [--repeats 3] [--out benchmarks/results] [--baseline OLD.json]

To measure another checkout (the code before a change), put it first on the path; the result
records which `vecaf_bench` was measured:

    git archive HEAD~1 | tar -x -C /tmp/old && ln -s plugins /tmp/old/vecaf_bench_plugins
    PYTHONPATH=/tmp/old python benchmarks/startup_time.py --out /tmp/old-results
    python benchmarks/startup_time.py --baseline /tmp/old-results/startup_time-cpu-2core.json

Results go to `benchmarks/results/startup_time-<machine>.json` and `.md` (machine tag as in the
other benchmarks: `cpu-<N>core`), with the machine facts, the load average and the CPU pressure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

ERROR_TARGET_S = 2.0
LIST_TARGET_S = 5.0

#: (name, vecaf-bench arguments, expected exit code, target in seconds or None)
COMMANDS: list[tuple[str, list[str], int, float | None]] = [
    ("run --set nosuch=1", ["run", "--set", "nosuch=1"], 2, ERROR_TARGET_S),
    ("run --selector nosuch", ["run", "--selector", "nosuch"], 2, ERROR_TARGET_S),
    ("run --dataset nosuch", ["run", "--dataset", "nosuch"], 2, ERROR_TARGET_S),
    ("run --config bad.yaml", ["run", "--config", "bad.yaml"], 2, ERROR_TARGET_S),
    ("suite bad-suite.yaml", ["suite", "bad-suite.yaml"], 2, ERROR_TARGET_S),
    ("select --features missing.npy", ["select", "--features", "missing.npy", "--budget", "5", "--out", "x.json"], 2,
     ERROR_TARGET_S),
    ("select NaN rows", ["select", "--features", "nan.npy", "--budget", "5", "--out", "x.json"], 2, ERROR_TARGET_S),
    ("select --selector activft", ["select", "--features", "ok.npy", "--budget", "5", "--selector", "activft",
                                   "--out", "x.json"], 2, ERROR_TARGET_S),
    ("select --set tau=abc", ["select", "--features", "ok.npy", "--budget", "5", "--selector", "activeft",
                              "--set", "tau=abc", "--out", "x.json"], 2, ERROR_TARGET_S),
    ("run --help", ["run", "--help"], 0, ERROR_TARGET_S),
    ("list", ["list"], 0, LIST_TARGET_S),
]
REFERENCES: list[tuple[str, list[str]]] = [
    ('python -c "pass"', ["-c", "pass"]),
    ('python -c "import torch"', ["-c", "import torch"]),
    ('python -c "import timm"', ["-c", "import timm"]),
]
SCRATCH = {
    "bad.yaml": "selector: random\nbatch_size: many\n",
    "bad-suite.yaml": "name: bad\nselectors: [random]\ndatasets: [digits]\ngrid: {seed: [0]}\n",
}


def _write_arrays(folder: Path) -> None:
    """Features files for the select cases: 50 x 8 finite (ok.npy), and the same with row 3 NaN."""
    import numpy as np

    feats = np.random.default_rng(0).random((50, 8), dtype=np.float32)
    np.save(folder / "ok.npy", feats)
    feats[3] = np.nan
    np.save(folder / "nan.npy", feats)


def cpu_pressure() -> str | None:
    """Linux PSI: the share of time runnable tasks waited for a CPU (others' load on a shared host)."""
    try:
        return Path("/proc/pressure/cpu").read_text().splitlines()[0]
    except (OSError, IndexError):
        return None


def _versions(env: dict[str, str]) -> dict[str, Any]:
    """Versions and the measured vecaf_bench's location, read in a subprocess (this one imports no torch)."""
    code = (
        "import json, importlib.metadata as m, vecaf_bench\n"
        "v = {p: m.version(p) for p in ('torch', 'timm', 'typer', 'pydantic', 'pluggy')}\n"
        "v['vecaf_bench'] = vecaf_bench.__file__\n"
        "print(json.dumps(v))"
    )
    with tempfile.TemporaryDirectory() as tmp:  # not this folder: `-c` puts the current folder first on the path
        p = subprocess.run([sys.executable, "-c", code], cwd=tmp, env=env, capture_output=True, text=True, check=True)
    return json.loads(p.stdout)


def machine_facts(env: dict[str, str]) -> dict[str, Any]:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": cores,
        "python": platform.python_version(),
        "platform": platform.platform(),
        **_versions(env),
    }


def cli_command() -> list[str]:
    """The installed `vecaf-bench` script beside this interpreter (what a user runs), else `-m`."""
    script = Path(sys.executable).with_name("vecaf-bench")
    if script.is_file():
        return [str(script)]
    found = shutil.which("vecaf-bench")
    return [found] if found else [sys.executable, "-m", "vecaf_bench.cli"]


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    return time.perf_counter() - t0, p.returncode, (p.stdout + p.stderr)


def import_profile(args: list[str], cwd: Path, env: dict[str, str]) -> dict[str, Any]:
    """One run under -X importtime: torch/timm imported or not, and the slowest top-level imports."""
    cmd = [sys.executable, "-X", "importtime", "-c", "import sys; sys.argv = ['vecaf-bench', *sys.argv[1:]]\n"
           "from vecaf_bench.cli import main\nmain()", *args]
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    top: list[tuple[int, str]] = []
    names: set[str] = set()
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        names.add(m.group(3))
        if len(m.group(2)) <= 1:  # a top-level import (one space after the bar)
            top.append((int(m.group(1)), m.group(3)))
    top.sort(reverse=True)
    return {
        "imports_torch": "torch" in names,
        "imports_timm": "timm" in names,
        "slowest_top_level_ms": {n: round(us / 1000) for us, n in top[:6]},
    }


def measure(repeats: int, env: dict[str, str]) -> dict[str, Any]:
    cli = cli_command()
    with tempfile.TemporaryDirectory(prefix="vecaf-startup-") as tmp:
        cwd = Path(tmp)
        _write_arrays(Path(tmp))
        for name, text in SCRATCH.items():
            (cwd / name).write_text(text)
        # warm the OS file cache (first imports read thousands of files) before anything is timed
        for _, args in REFERENCES:
            timed([sys.executable, *args], cwd, env)
        timed([*cli, "list"], cwd, env)
        times: dict[str, list[float]] = {}
        codes: dict[str, int] = {}
        tails: dict[str, str] = {}
        for _ in range(repeats):  # interleaved, so that a burst of other load hits every command alike
            for name, args in REFERENCES:
                times.setdefault(name, []).append(timed([sys.executable, *args], cwd, env)[0])
            for name, args, _, _ in COMMANDS:
                seconds, code, out = timed([*cli, *args], cwd, env)
                times.setdefault(name, []).append(seconds)
                codes[name] = code
                tails[name] = " ".join(out.split())[:200]
        profiles = {name: import_profile(args, cwd, env) for name, args, _, _ in COMMANDS}
    refs = {name: {"median_s": statistics.median(times[name]), "runs_s": times[name]} for name, _ in REFERENCES}
    commands = {}
    for name, args, expected, target in COMMANDS:
        median = statistics.median(times[name])
        commands[name] = {
            "argv": ["vecaf-bench", *args],
            "median_s": median,
            "runs_s": times[name],
            "target_s": target,
            "pass": bool(target is None or median < target),
            "exit_code": codes[name],
            "exit_code_expected": expected,
            "output_start": tails[name],
            **profiles[name],
        }
    return {"cli": cli, "references": refs, "commands": commands}


def markdown(result: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    m = result["machine"]
    lines = [
        f"{m['cpu']}, {m['cpu_cores_usable']} usable cores, Python {m['python']}, torch {m['torch']}, "
        f"timm {m['timm']}; {result['date']}; median of {result['repeats']} runs each.",
        "",
        "| command | median | target | result | exit | torch | timm |" + (" before |" if baseline else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if baseline else ""),
    ]
    for name, r in result["references"].items():
        old = (baseline or {}).get("references", {}).get(name)
        lines.append(f"| `{name}` (reference) | {r['median_s']:.2f} s | | | | | |"
                     + (f" {old['median_s']:.2f} s |" if old else (" |" if baseline else "")))
    for name, c in result["commands"].items():
        target = f"< {c['target_s']:.0f} s" if c["target_s"] else ""
        verdict = "pass" if c["pass"] else "**miss**"
        exit_ok = str(c["exit_code"]) + ("" if c["exit_code"] == c["exit_code_expected"] else " (!)")
        old = (baseline or {}).get("commands", {}).get(name)
        lines.append(
            f"| `vecaf-bench {name}` | {c['median_s']:.2f} s | {target} | {verdict} | {exit_ok} | "
            f"{'yes' if c['imports_torch'] else 'no'} | {'yes' if c['imports_timm'] else 'no'} |"
            + (f" {old['median_s']:.2f} s |" if old else (" |" if baseline else ""))
        )
    lines += ["", f"Load average at the start {result['loadavg_start']}, at the end {result['loadavg_end']}; "
              f"CPU pressure at the end: {result['cpu_pressure_end']}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each command (the median is judged)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for the .json and .md")
    ap.add_argument("--baseline", help="an earlier result (.json) of this benchmark, shown beside this one")
    args = ap.parse_args(argv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
    baseline = json.loads(Path(args.baseline).read_text()) if args.baseline else None
    result: dict[str, Any] = {
        "benchmark": "startup_time",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_facts(env),
        "repeats": args.repeats,
        "loadavg_start": os.getloadavg(),
    }
    result.update(measure(args.repeats, env))
    result["loadavg_end"] = os.getloadavg()
    result["cpu_pressure_end"] = cpu_pressure()
    if baseline:
        result["baseline"] = {k: baseline[k] for k in ("date", "machine", "references", "commands") if k in baseline}
    md = markdown(result, baseline)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"startup_time-cpu-{result['machine']['cpu_cores_usable']}core"
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / f"{stem}.md").write_text(f"# Time to an answer ({stem[len('startup_time-'):]})\n\n{md}")
    print(md)
    print(f"written: {out / stem}.json, .md")
    missed = [n for n, c in result["commands"].items() if not c["pass"]]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
