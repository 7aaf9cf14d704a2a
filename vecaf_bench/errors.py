"""Errors a user can act on.

Anything raised as `UserError` is printed as one paragraph and exits with code 2, never as a
traceback: the user typed something wrong (or the data on disk is wrong), not the program.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input: the message names the thing, the value and what to do."""

    exit_code = 2


class PluginError(UserError):
    """A plugin broke its contract (named in the message)."""


class RunInterrupted(Exception):
    """A run stopped on a signal after a checkpoint; `vecaf-bench run --resume RUN_DIR` continues.

    Here, not in the engine, so that the CLI can catch it without importing torch."""

    def __init__(self, run_dir: Path, step: int, total: int, signal_name: str = "SIGINT") -> None:
        super().__init__(f"interrupted by {signal_name} at step {step}/{total}")
        self.run_dir, self.step, self.total, self.signal_name = run_dir, step, total, signal_name


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    """' Did you mean 'x'?' or '' : appended to "unknown ..." messages."""
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def check_folder_of(path: str | Path, flag: str) -> Path:
    """A file the user asked for goes into a folder that exists: a missing one is named, not made
    (a typo would scatter results), and checked before any work whose result it would lose."""
    p = Path(path)
    if not p.parent.is_dir():
        raise UserError(f"{flag} '{p}': the folder '{p.parent}' does not exist. Create it, or give a path in an "
                        "existing folder.")
    return p


def unknown(kind: str, value: str, choices: Iterable[str], hint: str = "") -> UserError:
    known = sorted(set(choices))
    msg = f"unknown {kind} '{value}'; known: {', '.join(known) if known else '(none)'}.{did_you_mean(value, known)}"
    return UserError(msg + (f" {hint}" if hint else ""))
