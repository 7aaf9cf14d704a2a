"""`leaderboard --format html`: the board as one self-contained page to share.

One file that opens offline in any browser and can be mailed or attached to a review: the same
tables as the markdown board (the same cell texts, so the numbers cannot drift apart), the
plots embedded as PNG data, each method's card (its module docstring, what it reads), and
behind every row the configs of its runs (identity, where the selection came from, run folder).
No script, no external stylesheet or font: nothing to fetch.
"""

from __future__ import annotations

import base64
import html
import json
import tempfile
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .render import AUBC_HEADERS, PAIRED_HEADERS, _aubc_lines, _cells, _paired_lines, footnotes, headers

if TYPE_CHECKING:
    from .rules import Board, Row

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px 32px;color:#1d1d1f;background:#fff}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#666;margin-bottom:16px}
.wrap{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;margin:8px 0 4px;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d6d6d6;padding:4px 8px;text-align:left;vertical-align:top;white-space:nowrap}
th{background:#f2f4f7;font-weight:600}tbody tr:nth-child(even){background:#fafbfc}
td b{color:#0a7a2f}
ul.notes{color:#444;font-size:13px;max-width:1100px}
img{max-width:100%;border:1px solid #eee;margin:6px 0}
details{margin:4px 0 8px}summary{cursor:pointer;font-weight:600}
pre{background:#f6f8fa;border:1px solid #e3e3e3;padding:8px 10px;overflow:auto;font-size:12px;max-width:1200px;
white-space:pre-wrap}
"""


def _table(head: Sequence[str], lines: Sequence[Sequence[str]], escaped: bool, cls: str) -> str:
    def cell(c: str) -> str:
        return c if escaped else html.escape(c)

    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in lines)
    return f'<div class="wrap"><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table></div>'


def _embedded_plots(board: Board) -> list[tuple[str, str]]:
    """(caption, data URI) of every plot the board has; none when there is nothing to draw."""
    from .plots import write_plots

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            paths = write_plots(board, Path(tmp) / "leaderboard.png")
        except Exception as e:  # a board with nothing to plot: the page says so instead of failing
            return [(f"no plot ({e})", "")]
        for p in paths:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            caption = "label-budget sweep" if p.stem.endswith("-budgets") else "top-1 against batches"
            out.append((caption, f"data:image/png;base64,{data}"))
    return out


def _cards(board: Board) -> list[tuple[str, str, str]]:
    """(selector, what it reads, its card) for each selector on the board whose plugin is installed."""
    import inspect
    import sys

    from ..errors import UserError
    from ..pluginmanager import PluginHost

    try:
        host = PluginHost([])
    except Exception:  # noqa: BLE001 - the page is still worth writing without cards
        return []
    out = []
    for name in sorted({r.selector for r in board.rows}):
        reads = next((", ".join(r.uses) or "features" for r in board.rows if r.selector == name and r.uses is not None),
                     "?")
        if name == "selection":
            from ..run import given

            out.append((name, "nothing: a selection given as a file", inspect.getdoc(given) or ""))
            continue
        try:
            entry = host.selectors().get(name)
        except UserError:
            out.append((name, reads, "(its plugin is not installed here)"))
            continue
        f = entry.factory
        mod = f.__module__ if inspect.isclass(f) or inspect.isfunction(f) else entry.module.partition(":")[0]
        doc = inspect.getdoc(sys.modules[mod]) if mod in sys.modules else None
        out.append((name, reads, f"{entry.source} {entry.version}, {mod}\n\n{doc or '(no docstring)'}"))
    return out


def _run_config(source: str) -> dict[str, Any]:
    """What a run folder says of itself beyond the record: its given selection, status, devices."""
    try:
        s = json.loads((Path(source) / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: s[k] for k in ("selection", "status", "devices", "run_id") if k in s}


def _configs(rows: Sequence[Row]) -> str:
    parts = []
    for r in rows:
        runs = [{"seed": rec.seed, "run": rec.source, "final test top-1": rec.top1, **_run_config(rec.source),
                 "config": rec.identity} for rec in sorted(r.records, key=lambda x: x.seed)]
        text = json.dumps(runs, indent=1, default=str, sort_keys=False)
        title = f"{r.dataset} · {r.name} · budget {r.label_budget} · {r.batch_budget} batches · {len(r.records)} run(s)"
        parts.append(f"<details><summary>{html.escape(title)}</summary><pre>{html.escape(text)}</pre></details>")
    return "".join(parts)


def to_html(board: Board, title: str = "vecaf-bench leaderboard", source: str = "", extra_markdown: str = "") -> str:
    """The page (UTF-8 text)."""
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = [f"<h1>{html.escape(title)}</h1>",
            f'<div class="meta">{len(board.rows)} rows from {sum(len(r.records) for r in board.rows)} runs'
            f"{' in ' + html.escape(source) if source else ''} · written {stamp} by vecaf-bench</div>",
            "<h2>Board</h2>",
            _table(headers(board), [_cells(board, r, "html") for r in board.rows], True, "board")]
    paired = _paired_lines(board)
    if paired:
        body += ["<h2>Paired differences (row - other, over shared seeds)</h2>",
                 _table(PAIRED_HEADERS, paired, False, "paired")]
    if board.aubc:
        body += ["<h2>Area under the budget curve</h2>", _table(AUBC_HEADERS, _aubc_lines(board), False, "aubc")]
    body.append('<ul class="notes">' + "".join(f"<li>{html.escape(n)}</li>" for n in footnotes(board)) + "</ul>")
    if extra_markdown.strip():
        body += ["<h2>Published numbers</h2>", f"<pre>{html.escape(extra_markdown.strip())}</pre>"]
    body.append("<h2>Plots</h2>")
    for caption, uri in _embedded_plots(board):
        body.append(f"<figure><img alt='{html.escape(caption)}' src='{uri}'><figcaption>{html.escape(caption)}"
                    "</figcaption></figure>" if uri else f"<p>{html.escape(caption)}</p>")
    cards = _cards(board)
    if cards:
        body.append("<h2>Methods</h2>")
        for name, reads, card in cards:
            body.append(f"<details><summary>{html.escape(name)} — reads {html.escape(reads)}</summary>"
                        f"<pre>{html.escape(card)}</pre></details>")
    body += ["<h2>Configs behind each row</h2>", _configs(board.rows)]
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
