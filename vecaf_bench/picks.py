"""Picks as files a labelling campaign uses: CSV, JSONL and a Label Studio import file.

A selection leaves vecaf-bench as image paths relative to the folder it was made on, in pick
order, with the selector's score where it has one and where it came from (selector, backbone,
seed): a person opens the CSV in a spreadsheet, a labelling tool imports the Label Studio file,
and the same file comes back as `--selected` (round 2 grows it) or `run --selection` (evaluate
it). Files are written atomically: an interrupted write leaves the earlier file whole.

Reading accepts what writing produces, plus a run's `selected.json` (pool indices) and a plain
JSON list of paths or indices, so a selection made anywhere can be fed back.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UserError, check_folder_of, did_you_mean

FORMATS = ("csv", "jsonl", "label-studio")
EXTENSIONS = {".csv": "csv", ".jsonl": "jsonl", ".json": "label-studio"}
COLUMNS = ("rank", "path", "score", "selector", "backbone", "seed")


@dataclass
class Picks:
    """A selection in pick order: paths relative to the image folder (or pool indices), and where it
    came from. `scores[i]` is None where the selector gives none."""

    paths: list[str] = field(default_factory=list)
    indices: list[int] | None = None  # set instead of paths when the file held pool indices
    scores: list[float | None] = field(default_factory=list)
    selector: str | None = None
    backbone: str | None = None
    seed: int | None = None
    source: str = ""  # the file it was read from
    pool_size: int | None = None  # a run's selected.json: the size of the pool its indices point into
    dataset: str | None = None  # a run's selected.json: the dataset it was made on

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else len(self.paths)


def format_for(path: str | Path, fmt: str | None = None) -> str:
    """The format asked for by --format, else by the file's extension."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UserError(f"--format '{fmt}' is unknown for picks; use one of {', '.join(FORMATS)}."
                            f"{did_you_mean(fmt, FORMATS)}")
        return fmt
    ext = Path(path).suffix.lower()
    if ext not in EXTENSIONS:
        raise UserError(f"cannot tell the format of '{path}' from its extension '{ext or '(none)'}': name it .csv, "
                        ".jsonl or .json (Label Studio), or pass --format csv|jsonl|label-studio.")
    return EXTENSIONS[ext]


def _score(v: Any) -> float | None:
    return None if v is None or not math.isfinite(float(v)) else float(v)


def _rows(picks: Picks) -> list[dict[str, Any]]:
    scores = picks.scores or [None] * len(picks.paths)
    return [
        {"rank": i + 1, "path": p, "score": _score(s), "selector": picks.selector, "backbone": picks.backbone,
         "seed": picks.seed}
        for i, (p, s) in enumerate(zip(picks.paths, scores, strict=True))
    ]


def render_picks(picks: Picks, fmt: str, url_prefix: str | None = None) -> str:
    """The file's text. Label Studio tasks hold `data.image` = url_prefix + path (the path alone
    without a prefix: Label Studio's local-files storage resolves it) and the rest under `meta`."""
    rows = _rows(picks)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
        return buf.getvalue()
    if fmt == "jsonl":
        return "".join(json.dumps(r) + "\n" for r in rows)
    prefix = url_prefix or ""
    tasks = [{"data": {"image": prefix + r["path"]},
              "meta": {k: r[k] for k in COLUMNS if k != "path"} | {"path": r["path"]}} for r in rows]
    return json.dumps(tasks, indent=1) + "\n"


def write_picks(path: str | Path, picks: Picks, fmt: str | None = None, url_prefix: str | None = None) -> Path:
    """Writes the picks atomically; a missing folder is refused (named), not created."""
    from .results import write_text_atomic

    p = check_folder_of(path, "--out")
    write_text_atomic(p, render_picks(picks, format_for(p, fmt), url_prefix))
    return p


def _strip_prefix(image: str, url_prefix: str | None) -> str:
    if url_prefix and image.startswith(url_prefix):
        return image[len(url_prefix):]
    return image


def read_picks(path: str | Path, url_prefix: str | None = None) -> Picks:
    """Picks from a file written by `write_picks`, a run's selected.json or a JSON list of paths or
    indices. Paths come back as written (relative to the image folder)."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"selection file '{p}' does not exist. Give a picks file written by vecaf-bench select "
                        "(.csv, .jsonl, .json) or a run's selected.json.")
    text = p.read_text(encoding="utf-8")
    out = Picks(source=str(p))
    try:
        if p.suffix.lower() == ".csv":
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise UserError(f"selection file '{p}' has no 'path' column (its columns: "
                                f"{', '.join(reader.fieldnames or []) or 'none'}); vecaf-bench select writes "
                                f"{', '.join(COLUMNS)}.")
            rows = list(reader)
            out.paths = [r["path"] for r in rows]
            out.scores = [float(r["score"]) if r.get("score") not in (None, "") else None for r in rows]
            first = rows[0] if rows else {}
        elif p.suffix.lower() == ".jsonl":
            rows = [json.loads(line) for line in text.splitlines() if line.strip()]
            out.paths = [str(r["path"]) for r in rows]
            out.scores = [_score(r.get("score")) for r in rows]
            first = rows[0] if rows else {}
        else:
            data = json.loads(text)
            first = {}
            if isinstance(data, dict) and "rounds" in data:  # a run's selected.json
                rounds = [[int(i) for i in r] for r in data["rounds"]]
                grown = data.get("mode", "grow") != "reselect"
                out.indices = [i for r in rounds for i in r] if grown else (rounds[-1] if rounds else [])
                out.pool_size = int(data["pool_size"]) if data.get("pool_size") is not None else None
                _run_origin(p, out)
                return out
            if isinstance(data, list) and data and all(isinstance(t, dict) and "data" in t for t in data):
                out.paths = [_strip_prefix(str(t["data"]["image"]), url_prefix) for t in data]
                metas = [t.get("meta") or {} for t in data]
                out.scores = [_score(m.get("score")) for m in metas]
                first = metas[0]
            elif isinstance(data, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in data):
                out.indices = [int(v) for v in data]
                return out
            elif isinstance(data, list) and all(isinstance(v, str) for v in data):
                out.paths = list(data)
                return out
            else:
                raise UserError(f"selection file '{p}' is JSON but neither a Label Studio task list, a run's "
                                "selected.json, nor a list of paths or indices.")
    except (KeyError, ValueError, TypeError) as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"selection file '{p}' could not be read ({type(e).__name__}: {e}); write it with "
                        "vecaf-bench select or give one path per line in a .csv with a 'path' column.") from None
    out.selector = first.get("selector") or None
    out.backbone = first.get("backbone") or None
    seed = first.get("seed")
    out.seed = int(seed) if seed not in (None, "") else None
    return out


def selection_files(spec: str) -> list[Path]:
    """The files of a `--selection` value: one file, or several joined by commas (the rounds of a
    labelling campaign, in order: round 2's file holds only its new picks)."""
    if "," not in spec or Path(spec).is_file():
        return [Path(spec)]
    return [Path(s.strip()) for s in spec.split(",") if s.strip()]


def read_selection(spec: str) -> Picks:
    """The picks of a `--selection` value, the files' picks one after the other."""
    parts = [read_picks(f) for f in selection_files(spec)]
    if len(parts) == 1:
        return parts[0]
    if len({p.indices is None for p in parts}) > 1:
        raise UserError(f"--selection '{spec}' mixes files of image paths with files of pool indices; give the "
                        "rounds as picks files of vecaf-bench select, or as one run's selected.json.")
    sizes = sorted({p.pool_size for p in parts if p.pool_size is not None})
    if len(sizes) > 1:
        raise UserError(f"--selection '{spec}': its files hold indices into pools of different sizes "
                        f"({', '.join(f'{n:,}' for n in sizes)}); they were made on different datasets.")
    out = Picks(source=spec, pool_size=sizes[0] if sizes else None,
                dataset=next((p.dataset for p in parts if p.dataset), None))
    if parts[0].indices is not None:
        out.indices = [i for p in parts for i in (p.indices or [])]
    else:
        out.paths = [x for p in parts for x in p.paths]
        out.scores = [x for p in parts for x in (p.scores or [None] * len(p.paths))]
    selectors = list(dict.fromkeys(p.selector for p in parts if p.selector))
    backbones = list(dict.fromkeys(p.backbone for p in parts if p.backbone))
    out.selector, out.backbone = "+".join(selectors) or None, "+".join(backbones) or None
    seeds = {p.seed for p in parts}
    out.seed = seeds.pop() if len(seeds) == 1 else None
    return out


def _run_origin(selected: Path, out: Picks) -> None:
    """Selector, backbone, seed and dataset of the run whose selected.json this is, from its config.yaml."""
    import yaml

    try:
        cfg = yaml.safe_load((selected.parent / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return
    if isinstance(cfg, dict):
        out.selector, out.backbone = cfg.get("selector"), cfg.get("backbone")
        out.seed = cfg.get("seed") if isinstance(cfg.get("seed"), int) else None
        out.dataset = cfg.get("dataset")


def match_paths(wanted: Sequence[str], pool: Sequence[str], what: str) -> list[int]:
    """Pool indices of `wanted` paths; paths not in the pool are refused, how many and the first few."""
    where = {p: i for i, p in enumerate(pool)}
    missing = [p for p in wanted if p not in where]
    if missing:
        few = ", ".join(missing[:5])
        raise UserError(f"{what}: {len(missing)} of its {len(wanted)} images are not in the folder ({few}"
                        f"{', ...' if len(missing) > 5 else ''}). Check that it was made on this folder.")
    return [where[p] for p in wanted]


def match_portable(
    wanted: Sequence[str], pool: Sequence[str], what: str, elsewhere: Mapping[str, Sequence[str]] | None = None
) -> tuple[list[int], str]:
    """Pool indices of WANTED paths made on another copy of the images: the same relative path, else
    one path ending with the other (picks made on the unlabelled folder, `img_7.png`, found in the
    labelled copy's `cat/img_7.png`), else the same file name when only one pool image has it.
    Returns (indices, how they matched). Paths not found are refused, counted and named, with the
    other splits of the dataset (ELSEWHERE: split name -> its paths) that hold some of them."""
    where = {p: i for i, p in enumerate(pool)}
    if all(p in where for p in wanted):
        return [where[p] for p in wanted], "path"
    by_name: dict[str, list[int]] = {}
    for i, p in enumerate(pool):
        by_name.setdefault(p.rsplit("/", 1)[-1], []).append(i)
    out: list[int] = []
    missing: list[str] = []
    ambiguous: list[str] = []
    for w in wanted:
        if w in where:
            out.append(where[w])
            continue
        same = by_name.get(w.rsplit("/", 1)[-1], [])
        nested = [i for i in same if pool[i].endswith("/" + w) or w.endswith("/" + pool[i])]
        found = nested if nested else same
        if len(found) == 1:
            out.append(found[0])
        elif found:
            ambiguous.append(w)
        else:
            missing.append(w)
    if ambiguous:
        raise UserError(f"{what}: {len(ambiguous)} of its {len(wanted)} paths match several images of the dataset by "
                        f"file name ({', '.join(ambiguous[:5])}{', ...' if len(ambiguous) > 5 else ''}); write the "
                        "picks with paths relative to the dataset's folder.")
    if missing:
        few = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        held = []
        for split, paths in (elsewhere or {}).items():
            names = {p.rsplit("/", 1)[-1] for p in paths}
            k = sum(m.rsplit("/", 1)[-1] in names for m in missing)
            if k:
                held.append(f"{k} are in its {split} split, which is never trained on")
        raise UserError(f"{what}: {len(missing)} of its {len(wanted)} images are not in the dataset's pool ({few})"
                        f"{'; ' + '; '.join(held) if held else ''}. Check that the selection was made on these images "
                        "(paths relative to the folder, or the same file names).")
    return out, "file name"
