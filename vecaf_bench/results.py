"""The run's files, written and read by the core alone; one atomic-write helper for the code base.

A run folder holds config.yaml, selected.json, events.jsonl, summary.json and, while the run is
unfinished, checkpoint.pt. Trackers (W&B, ...) observe the same events but never write these:
resume, suite skipping and the leaderboard read them whatever trackers a run had.
A reader (or a resumed suite) never sees half a file: every file but the append-only event log
is written to a temporary name in the same folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .errors import UserError

CONFIG = "config.yaml"
SUMMARY = "summary.json"
EVENTS = "events.jsonl"
SELECTED = "selected.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS_CHECKPOINT = "checkpoint.prev.pt"  # the last good one, kept until the next is whole


def _default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    to_dict = getattr(o, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `path` to write to; renamed onto `path` when the block succeeds,
    removed when it fails. The one way this code base writes a file atomically."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp makes the file private (0600); the result gets the mode a plain open() would give
        # (or the mode of the file it replaces), so a board or picks file can be shared as usual
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, default=_default) + "\n")


def append_jsonl(path: str | Path, obj: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(obj, default=_default) + "\n")
        f.flush()


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def read_summary(run_dir: str | Path) -> dict[str, Any] | None:
    """A run's summary.json, or None when it has none or it cannot be read as a JSON object."""
    try:
        data = read_json(Path(run_dir) / SUMMARY)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunFiles:
    """One run folder's files. Rank 0 alone writes (the engine makes the others no-ops)."""

    def __init__(self, run_dir: str | Path, writer: bool = True) -> None:
        self.dir = Path(run_dir)
        self.writer = writer

    def path(self, name: str) -> Path:
        return self.dir / name

    def write_config(self, yaml_text: str) -> None:
        if self.writer:
            write_text_atomic(self.path(CONFIG), yaml_text)

    def event(self, kind: str, **data: Any) -> None:
        if self.writer:
            append_jsonl(self.path(EVENTS), {"event": kind, "time": time.time(), **data})

    def write_selected(self, pool_size: int, reselects: bool, rounds: list[np.ndarray]) -> None:
        if self.writer:  # reselect: each round holds the whole set
            obj = {"pool_size": pool_size, "mode": "reselect" if reselects else "grow", "rounds": rounds}
            write_json_atomic(self.path(SELECTED), obj)

    def write_summary(self, summary: dict[str, Any]) -> None:
        if self.writer:
            write_json_atomic(self.path(SUMMARY), summary)

    def summary(self) -> dict[str, Any] | None:
        return read_summary(self.dir)

    # -- checkpoints ----------------------------------------------------------------------------
    def has_checkpoint(self) -> bool:
        return self.path(CHECKPOINT).is_file() or self.path(PREVIOUS_CHECKPOINT).is_file()

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Writes the new checkpoint completely before the last good one steps aside: a kill at any
        moment leaves checkpoint.pt or checkpoint.prev.pt (or both) whole."""
        if not self.writer:
            return
        import torch

        with atomic_path(self.path(CHECKPOINT)) as tmp:
            torch.save(state, tmp)
            if self.path(CHECKPOINT).exists():
                os.replace(self.path(CHECKPOINT), self.path(PREVIOUS_CHECKPOINT))

    def _read_checkpoint(self, path: Path) -> dict[str, Any]:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or "global_step" not in state:
            raise ValueError("not a vecaf-bench checkpoint")
        return state

    def _put_aside(self, path: Path, e: Exception) -> str:
        aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
        os.replace(path, aside)
        first = (str(e).splitlines() or [""])[0][:200]
        return f"'{path}' is damaged ({type(e).__name__}: {first}); it was kept aside as '{aside.name}'"

    def load_checkpoint(self, console: Any = None) -> dict[str, Any]:
        """The newest whole checkpoint. A damaged one (a killed save, a full disk, a foreign file) is
        kept aside, never deleted, and the previous good one is used, with a message; with none
        left, a UserError says how to start the run again."""
        damaged = []
        for path in (self.path(CHECKPOINT), self.path(PREVIOUS_CHECKPOINT)):
            if not path.is_file():
                continue
            try:
                state = self._read_checkpoint(path)
            except Exception as e:  # torch raises many types for a truncated or foreign file
                damaged.append(self._put_aside(path, e))
                continue
            if damaged and console is not None:
                console.print(
                    f"[yellow]checkpoint {damaged[0]}. Resuming from the previous one, '{path.name}' "
                    f"(step {state['global_step']}).",
                    highlight=False, soft_wrap=True,
                )
            return state
        raise UserError(
            f"checkpoint {' and '.join(damaged) or f'{self.path(CHECKPOINT)} is missing'}. There is no good "
            f"state of this run left to resume from: start it again with "
            f"vecaf-bench run --config {self.path(CONFIG)} (the selection and training repeat exactly)."
        )

    def drop_checkpoint(self) -> None:
        if self.writer:
            for name in (CHECKPOINT, PREVIOUS_CHECKPOINT):
                if self.path(name).exists():
                    self.path(name).unlink()
