"""What the command line prints about a finished run (the engine prints only progress)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def _ood_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    grouped = {n for n, v in s.get("ood", {}).items() if v.get("group")}
    for g, v in s.get("ood_groups", {}).items():
        if v["top1"] is not None:
            rows.append((f"ood {g} (mean of {v['splits']})", f"{v['top1']:.2f}% / {v['top5']:.2f}%"))
    for n, v in s.get("ood", {}).items():
        if n not in grouped and v["top1"] is not None:
            rows.append((f"ood {n}", f"{v['top1']:.2f}% / {v['top5']:.2f}%"))
    return rows


def _val_text(s: dict[str, Any]) -> str:
    val = s.get("val")
    if not val:
        return "no validation split, " if "val" in s else ""
    return f"val {val['size']}, "


def _curve_row(curve: list[dict[str, Any]]) -> tuple[str, str]:
    """The test curve; the validation curve when the test split was evaluated only at the final
    and best steps (test_curve false)."""
    if all(p.get("top1") is not None for p in curve):
        return "curve (step: top-1)", "  ".join(f"{p['step']}: {p['top1']:.1f}" for p in curve)
    return ("curve (step: val top-1)",
            "  ".join(f"{p['step']}: {p['val_top1']:.1f}" for p in curve) + "  (test at the final and best steps only)")


def _best_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
    best = s.get("best")
    if not best:
        return []
    return [
        ("val top-1 (final)", f"{s['val_top1']:.2f}%"),
        ("best on val", f"step {best['step']}: val {best['val_top1']:.2f}%, test {best['test_top1']:.2f}%"),
    ]


def _images(s: dict[str, Any], key: str, bare: bool = False) -> str:
    n = (s.get("compute") or {}).get(key)
    if n is None:
        return ""
    return f"{n:,}" if bare else f" ({n:,} images)"


def print_run_summary(s: dict[str, Any], run_dir: str | Path) -> None:
    """The one-screen summary; under torchrun only rank 0 prints it."""
    if int(os.environ.get("RANK", "0")) != 0:  # the process group is closed by now: torchrun's variable
        return
    out = Console(emoji=False)
    table = Table(title=f"vecaf-bench run {s['run_id']}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    cold = (s.get("capabilities") or {}).get("cold_start")
    given = s.get("selection")
    rows = [
        ("selector", f"{s['selector']} (uses: {', '.join(s['uses']) or 'features only'})"
         + (f", round 0 by {cold}" if cold else "")) if not given else
        ("picks", f"{given['file']}: {given['size']} images matched by {given['matched_by']}"
         + (f", made by {given['selector']}" if given.get("selector") else "")
         + (f" on {given['backbone']}" if given.get("backbone") else "")),
        ("dataset", f"{s['dataset']}: pool {s['pool_size']}, {_val_text(s)}test {s['test_size']}, "
                    f"{s['num_classes']} classes"),
        ("backbone", f"{s['backbone']} @ {s['image_size'] or 'default'} px on {s['device']}"),
        ("label budget", f"{s['label_budget']} images"
                         + ("" if str(s["label_budget_requested"]) == str(s["label_budget"]) else
                            f" ({s['label_budget_requested']})")),
        ("batch budget", f"{s['steps']}/{s['batch_budget']} steps x {s['batch_size']}"),
        ("test top-1 / top-5", f"[bold green]{s['test_top1']:.2f}%[/] / {s['test_top5']:.2f}%"),
        *_best_rows(s),
        _curve_row(s["curve"]),
        *_ood_rows(s),
        ("selection", f"{s['selection_seconds']:.2f} s, {s['selection_forward_batches']} forward batches"
                      + _images(s, "selection_images")),
        ("training", f"{_images(s, 'train_images', bare=True) or '?'} image-passes"),
        (
            "features",
            f"{'cache hit' if s['features'].get('cached') else 'extracted'} in {s['features']['seconds']:.1f} s",
        ),
        ("wall time", f"{s['wall_seconds']:.1f} s"),
        ("results", str(run_dir)),
    ]
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
