"""Suite runs as processes forked from a server that has imported torch, timm and the plugins once.

`vecaf-bench suite --max-parallel N` runs each grid point in a process of its own, so that a run
that crashes, leaks memory or hangs takes no other run with it. Started as `vecaf-bench run`, each
such process spends about 7 s on a 2-core CPU importing torch and timm before its first step: on
the efficiency suite's 10-30 s runs that is a third of the time. Here the processes are forked
from a multiprocessing fork server that did those imports once (`PRELOAD`), and each then runs the
same `vecaf-bench run --config FILE` (or `--resume DIR`) command line inside itself: the same code,
the same exit codes, the same log, a fresh process per run.

Why the fork server and not plain fork: the suite's own process may hold threads (rich's
progress refresh, an OpenMP pool) that a fork would copy in a broken state; the server is a clean
single-threaded process whose only work is to import and fork. Where the platform has no fork
server (Windows), `available()` is False and the suite starts `vecaf-bench run` subprocesses.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import traceback
from collections.abc import Mapping
from typing import Any

#: Imported once in the fork server; what a run would otherwise import before its first step.
PRELOAD = ["vecaf_bench.suite.preload"]


def available() -> bool:
    return "forkserver" in multiprocessing.get_all_start_methods()


def start(argv: list[str], log: str, env: Mapping[str, str]) -> Any:
    """A started process running `vecaf-bench ARGV` with its output appended to LOG, under ENV
    (the whole environment, as a subprocess would get it); `.exitcode` is the command's exit code."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    proc = ctx.Process(
        target=_child, args=(list(argv), str(log), dict(env), os.getcwd(), list(sys.path)), daemon=False
    )
    proc.start()
    return proc


def _child(argv: list[str], log: str, env: dict[str, str], cwd: str, parent_path: list[str]) -> None:
    """The run's process: a session of its own (a terminal's Ctrl-C reaches the suite, which
    passes exactly one on), its output in LOG, the suite's environment and import path, then the
    command line, whose exit code becomes the process's."""
    os.setsid()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    sys.path[:0] = [p for p in parent_path if p not in sys.path]
    threads = env.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        import torch

        torch.set_num_threads(int(threads))  # torch read OMP_NUM_THREADS in the server, under its environment
    code = 0
    try:
        from vecaf_bench.cli import app  # imported here: its console is made for the log, not the server's tty

        app(args=argv, prog_name="vecaf-bench", standalone_mode=True)
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:  # noqa: BLE001 - what a subprocess would print before dying
        traceback.print_exc()
        code = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)
