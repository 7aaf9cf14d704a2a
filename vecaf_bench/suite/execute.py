"""Running what is left of a suite: in this process, in `vecaf-bench run` subprocesses, or as submitit
jobs (SLURM on a cluster, local processes elsewhere), with `<out>/<suite>/suite.json` rewritten
atomically whenever a run's status changes.

Whatever the executor, a run is the same `Runner` call on the same resolved config, in the same
folder (the config key `run_name`), so an in-process, a subprocess and a submitit run of a grid
point are interchangeable, and a re-run of the suite skips or resumes them alike. Runs of the same
feature group wait for the group's first run, so pool features are extracted once (into the shared
cache) even when many runs go at once.

A submitit job survives preemption (see `SuiteJob`): on SIGUSR2 the run saves its checkpoint and
the job requeues itself to resume from it; on SIGTERM the job ends "interrupted" and the next run
of the suite resumes it.
"""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..config import config_from_dict, dump_yaml
from ..errors import UserError, did_you_mean
from ..results import read_json, write_json_atomic, write_text_atomic
from .grid import Planned, Suite, SuiteRun, feature_group, move_aside, plan

# ---------------------------------------------------------------------------------------------
# the ledger: suite.json


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Ledger:
    """suite.json: the expanded grid and every run's status, rewritten atomically on each change."""

    def __init__(self, suite: Suite, planned: list[Planned], executor: str) -> None:
        self.suite = suite
        self.path = suite.dir / "suite.json"
        self.started = time.time()
        self.executor = executor
        self.entries: dict[str, dict[str, Any]] = {}
        for p in planned:
            r = p.run
            self.entries[r.run_id] = {
                "run_id": r.run_id,
                "dir": str(r.run_dir),
                **dataclasses.asdict(r.point),
                "action": p.action,
                "status": "skipped" if p.action == "skip" else "pending",
                "test_top1": _top1(r.run_dir) if p.action == "skip" else None,
                "seconds": None,
                "error": None,
                "log": None,
                "job_id": None,
                "found": p.note or None,  # a failed, damaged or half-made folder found before this run
                "config": r.config.to_dict(),
            }

    def counts(self) -> dict[str, int]:
        statuses = [e["status"] for e in self.entries.values()]
        keys = ("finished", "skipped", "failed", "interrupted", "running", "submitted", "pending")
        return {"total": len(statuses), **{k: statuses.count(k) for k in keys}}

    def update(self, run_id: str, **fields: Any) -> None:
        self.entries[run_id].update(fields)
        self.write()

    def write(self) -> None:
        self.suite.dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(
            self.path,
            {
                "name": self.suite.name,
                "source": self.suite.source,
                "dir": str(self.suite.dir),
                "executor": self.executor,
                "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
                "updated": _now(),
                "elapsed_seconds": round(time.time() - self.started, 1),
                "counts": self.counts(),
                "notes": self.suite.notes,
                "runs": list(self.entries.values()),
            },
        )


def _top1(run_dir: Path) -> float | None:
    try:
        return read_json(run_dir / "summary.json").get("test_top1")
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------
# executing


@dataclass
class Outcome:
    status: str  # finished | failed | interrupted
    error: str | None = None
    log: str | None = None
    test_top1: float | None = None


@dataclass
class SuiteReport:
    suite: Suite
    ledger: Ledger
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [e for e in self.ledger.entries.values() if e["status"] == "failed"]

    @property
    def interrupted(self) -> list[dict[str, Any]]:
        """Runs stopped with their checkpoint (a SIGTERMed job): the next run of the suite resumes them."""
        return [e for e in self.ledger.entries.values() if e["status"] == "interrupted"]


class SuiteInterrupted(Exception):
    """Ctrl-C: the suite stopped; the same command again picks up where it stopped."""


def run_job(config: dict[str, Any], run_dir: str, resume: bool) -> dict[str, Any]:
    """One run, in whatever process an executor gives it (a submitit job): fresh or resumed."""
    from ..runner import Runner

    _join_job_processes()
    console = Console(stderr=True, emoji=False)
    if resume:
        summary = Runner.resume(run_dir, console=console)
    else:
        cfg = config_from_dict(config, f"in the suite config of {run_dir}")
        summary = Runner(cfg, console=console).run()
    return {"run_id": summary.get("run_id"), "status": summary.get("status"), "test_top1": summary.get("test_top1")}


class SuiteJob:
    """A submitit job's callable: one suite run, that survives preemption.

    Checkpointable as submitit reads it (it requeues a job whose callable has a `checkpoint`
    method, what `submitit.helpers.Checkpointable` provides; duck-typed here so that this module
    imports without submitit). On preemption or time-out submitit sends SIGUSR2: the runner
    finishes its step, saves checkpoint.pt and raises RunInterrupted; the job then hands the
    signal to submitit's own handler (captured before the runner took the signal over), which
    calls `checkpoint()` -- a submission of this job that resumes from checkpoint.pt -- and
    requeues (SLURM: scontrol requeue; locally the controller starts the task again). SIGTERM and
    SIGINT (scancel, Ctrl-C) are no preemption, as for submitit: the run keeps its checkpoint, the
    job ends "interrupted" and the next run of the suite resumes it."""

    def __init__(self, config: dict[str, Any], run_dir: str) -> None:
        self.config, self.run_dir = config, run_dir

    def __call__(self, resume: bool = False, finished: bool = False) -> dict[str, Any]:
        """Every task of the job gets the same arguments (the suite's plan, then `checkpoint()`'s),
        so that the ranks of a distributed run agree on resuming; rank 0 alone touches the folder."""
        from ..errors import RunInterrupted
        from .grid import move_folder_aside, read_run_folder

        requeue = _submitit_preemption_handler()
        if finished:  # preempted between the run's end and the job's
            s = read_run_folder(self.run_dir).summary or {}
            return {"run_id": s.get("run_id"), "status": "finished", "test_top1": s.get("test_top1")}
        if not resume and _job_rank() == 0 and Path(self.run_dir).exists():
            move_folder_aside(self.run_dir)  # an attempt of this job preempted before its first checkpoint
        try:
            return run_job(self.config, self.run_dir, resume)
        except RunInterrupted as e:
            if requeue is not None and e.signal_name == requeue[0].name:
                requeue[1](requeue[0], None)  # checkpoint() and requeue; exits this process (rank 0)
            return {"run_id": Path(self.run_dir).name, "status": "interrupted", "test_top1": None,
                    "error": f"{e}; its checkpoint is in {e.run_dir}: run the suite again to resume it"}

    def checkpoint(self, resume: bool = False, finished: bool = False) -> Any:
        """The submission submitit requeues (called on rank 0): this job again, resuming from
        checkpoint.pt when there is one (a failed run starts over, as in a suite's plan)."""
        import submitit

        from .grid import read_run_folder

        found = read_run_folder(self.run_dir)
        return submitit.helpers.DelayedSubmission(
            self, resume=found.checkpoint and found.kind != "failed", finished=found.kind == "finished"
        )


def _job_rank() -> int:
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return 0
    import submitit

    return int(submitit.JobEnvironment().global_rank)


def _submitit_preemption_handler() -> tuple[signal.Signals, Any] | None:
    """(signal, submitit's handler of it) inside a submitit job; None elsewhere."""
    if "SUBMITIT_EXECUTOR" not in os.environ:
        return None
    import submitit

    sig = signal.Signals(submitit.JobEnvironment._usr_sig())
    handler = signal.getsignal(sig)
    return (sig, handler) if callable(handler) else None


def _join_job_processes() -> None:
    """A submitit job with several tasks (one per GPU) is one run under torch.distributed: export
    what torchrun would (MASTER_ADDR, RANK, WORLD_SIZE, LOCAL_RANK), as DINO and DeiT do on SLURM."""
    if "SUBMITIT_EXECUTOR" not in os.environ or "WORLD_SIZE" in os.environ:
        return
    import submitit

    if submitit.JobEnvironment().num_tasks > 1:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def _counts_text(ledger: Ledger, fraction: bool = True) -> str:
    c = ledger.counts()
    done = c["finished"] + c["skipped"] + c["failed"] + c["interrupted"]
    return ((f"{done}/{c['total']} · " if fraction else "")
            + f"finished {c['finished']} · skipped {c['skipped']} · failed {c['failed']}"
            + (f" · running {c['running'] + c['submitted']}" if c["running"] + c["submitted"] else ""))


def _elapsed(ledger: Ledger) -> str:
    s = int(time.time() - ledger.started)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def run_suite(
    suite: Suite,
    executor: str = "local",
    max_parallel: int = 1,
    console: Console | None = None,
    submitit_options: Mapping[str, Any] | None = None,
    poll_seconds: float = 1.0,
) -> SuiteReport:
    """Runs what is left of the suite and returns the report (suite.json holds the same)."""
    console = console or Console(stderr=True, emoji=False)
    if executor not in ("local", "submitit"):
        hint = did_you_mean(executor, ["local", "submitit"])
        raise UserError(f"executor '{executor}' is unknown; use local or submitit.{hint}")
    if max_parallel < 1:
        raise UserError(f"--max-parallel must be at least 1, got {max_parallel}.")
    planned = plan(suite)
    suite.dir.mkdir(parents=True, exist_ok=True)
    ledger = Ledger(suite, planned, executor if executor == "submitit" or max_parallel == 1 else "local-processes")
    ledger.write()
    todo = [p for p in planned if p.action != "skip"]
    again: dict[str, int] = {}
    for p in todo:
        if p.stale and p.found is not None:
            again[p.found.kind] = again.get(p.found.kind, 0) + 1
    again_text = f" ({', '.join(f'{n} {k}' for k, n in sorted(again.items()))} folder(s) run again)" if again else ""
    console.print(
        f"suite {suite.name}: {len(planned)} runs, {len(planned) - len(todo)} finished earlier (skipped), "
        f"{sum(p.action == 'resume' for p in todo)} to resume, {sum(p.action == 'start' for p in todo)} to start"
        f"{again_text} -> {suite.dir}",
        soft_wrap=True,
        highlight=False,
    )
    for p in todo:
        if p.stale:
            dest = move_aside(suite, p.run)
            what = p.found.describe() if p.found else f"an unfinished folder {p.run.run_dir}"
            ledger.update(p.run.run_id, found=f"{what}; moved to {dest}")
            console.print(f"[yellow]{p.run.run_id}: {escape(what)}; moved to {escape(str(dest))}, run again[/]",
                          highlight=False, soft_wrap=True)
        elif p.note:
            console.print(f"[yellow]{p.run.run_id}: {escape(p.note)}[/]", highlight=False, soft_wrap=True)
    if executor == "local" and max_parallel == 1:
        _run_in_process(todo, ledger, console)
    else:
        backend: _Backend
        if executor == "local":
            backend = _Processes(suite.dir, max_parallel)
        else:
            backend = _Submitit(suite, **dict(submitit_options or {}))
        _run_pooled(todo, planned, ledger, backend, max_parallel, console, poll_seconds)
    report = SuiteReport(suite, ledger, ledger.counts())
    ledger.write()
    return report


def _run_in_process(todo: list[Planned], ledger: Ledger, console: Console) -> None:
    from ..runner import RunInterrupted, Runner

    logs = ledger.suite.dir / "logs"
    for i, p in enumerate(todo, 1):
        rid = p.run.run_id
        console.rule(f"[bold]{rid}[/] ({i}/{len(todo)})")
        console.print(f"suite {ledger.suite.name}: {_counts_text(ledger)} · elapsed {_elapsed(ledger)}",
                      highlight=False)
        ledger.update(rid, status="running", started=_now())
        t0 = time.time()
        try:
            if p.action == "resume":
                summary = Runner.resume(p.run.run_dir, console=console)
            else:
                summary = Runner(p.run.config, console=console).run()
            ledger.update(rid, status="finished", test_top1=summary.get("test_top1"), seconds=time.time() - t0)
        except RunInterrupted as e:
            ledger.update(rid, status="interrupted", seconds=time.time() - t0, error=str(e))
            raise SuiteInterrupted(
                f"suite {ledger.suite.name} interrupted during {rid} ({e}); its checkpoint is in {e.run_dir}."
            ) from None
        except KeyboardInterrupt:
            ledger.update(rid, status="interrupted", seconds=time.time() - t0, error="Ctrl-C")
            raise SuiteInterrupted(f"suite {ledger.suite.name} interrupted during {rid}.") from None
        except UserError as e:
            ledger.update(rid, status="failed", error=str(e), seconds=time.time() - t0)
            console.print(f"[red]{rid} failed:[/] {e}", highlight=False)
        except Exception as e:  # a bug in a plugin or the runner: keep the traceback, go on with the others
            logs.mkdir(parents=True, exist_ok=True)
            log = logs / f"{rid}.log"
            write_text_atomic(log, traceback.format_exc())
            error = f"{type(e).__name__}: {e}"
            ledger.update(rid, status="failed", error=error, log=str(log), seconds=time.time() - t0)
            console.print(f"[red]{rid} failed:[/] {type(e).__name__}: {e} (traceback in {log})", highlight=False)


class _Backend:
    kind = "?"

    def start(self, run: SuiteRun, resume: bool) -> tuple[Any, str | None, str | None]:
        """Starts a run; returns (handle, job id, log path)."""
        raise NotImplementedError

    def poll(self, handle: Any) -> Outcome | None:
        raise NotImplementedError

    def interrupt(self, handles: list[Any]) -> str:
        raise NotImplementedError


class GpuSlots:
    """Spreads the local runs over the visible GPUs: each run process sees one GPU
    (CUDA_VISIBLE_DEVICES), the least busy one, so `--max-parallel 8` on an 8-GPU machine runs one
    run per GPU instead of eight on cuda:0."""

    def __init__(self, gpus: list[str]) -> None:
        self.busy = {g: 0 for g in gpus}

    @classmethod
    def visible(cls) -> GpuSlots:
        listed = os.environ.get("CUDA_VISIBLE_DEVICES")
        if listed is not None:
            return cls([g.strip() for g in listed.split(",") if g.strip()])
        try:
            import torch

            return cls([str(i) for i in range(torch.cuda.device_count())])
        except ImportError:
            return cls([])

    def take(self) -> str | None:
        if len(self.busy) < 2:
            return None  # no GPU, or one: nothing to spread
        gpu = min(self.busy, key=lambda g: self.busy[g])
        self.busy[gpu] += 1
        return gpu

    def give(self, gpu: str | None) -> None:
        if gpu is not None:
            self.busy[gpu] -= 1


class _Processes(_Backend):
    """`vecaf-bench run --config <resolved yaml>` (or `--resume DIR`), one process per run, logs in
    <suite>/logs/: forked from a server that imported torch and timm once (suite.forked), or, where
    there is no fork server, started as subprocesses."""

    kind = "process"

    def __init__(self, suite_dir: Path, max_parallel: int = 1, fork: bool | None = None) -> None:
        from . import forked

        self.fork = forked.available() if fork is None else fork
        self.logs = suite_dir / "logs"
        self.configs = suite_dir / "configs"
        self.env = dict(os.environ)
        if "OMP_NUM_THREADS" not in self.env:  # N runs share the cores instead of each taking all of them
            self.env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max_parallel))
        self.gpus = GpuSlots.visible() if max_parallel > 1 else GpuSlots([])

    def start(self, run: SuiteRun, resume: bool) -> tuple[Any, str | None, str | None]:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.configs.mkdir(parents=True, exist_ok=True)
        argv = ["run"]
        if resume:
            argv += ["--resume", str(run.run_dir)]
        else:
            cfg_file = self.configs / f"{run.run_id}.yaml"
            write_text_atomic(cfg_file, dump_yaml(run.config))
            argv += ["--config", str(cfg_file)]
        cmd = [sys.executable, "-m", "vecaf_bench.cli", *argv]
        log = self.logs / f"{run.run_id}.log"
        gpu = self.gpus.take()
        env = self.env if gpu is None else {**self.env, "CUDA_VISIBLE_DEVICES": gpu}
        with open(log, "a") as f:
            shown = f"vecaf-bench {' '.join(argv)}  (forked)" if self.fork else " ".join(cmd)
            f.write(f"$ {shown}" + (f"  (CUDA_VISIBLE_DEVICES={gpu})" if gpu is not None else "") + "\n")
            f.flush()
            if self.fork:
                from . import forked

                proc: Any = forked.start(argv, str(log), env)
            else:
                # a session of its own: a terminal Ctrl-C reaches the suite, which passes exactly one on (see interrupt)
                proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
        return (proc, run, log, gpu), str(proc.pid), str(log)

    @staticmethod
    def _code(proc: Any) -> int | None:
        return proc.poll() if isinstance(proc, subprocess.Popen) else proc.exitcode

    def poll(self, handle: Any) -> Outcome | None:
        proc, run, log, gpu = handle
        rc = self._code(proc)
        if rc is None:
            return None
        self.gpus.give(gpu)
        if rc == 0:
            return Outcome("finished", log=str(log), test_top1=_top1(run.run_dir))
        if rc in (130, 143):  # the runner stopped on SIGINT / SIGTERM after saving its checkpoint
            return Outcome("interrupted", log=str(log), error="interrupted (checkpoint saved)")
        return Outcome("failed", log=str(log), error=_last_error(Path(log), rc))

    def interrupt(self, handles: list[Any]) -> str:
        for proc, *_ in handles:
            if self._code(proc) is None:
                os.kill(proc.pid, signal.SIGINT)  # the runner finishes its step and saves a checkpoint
        deadline = time.time() + 300
        for proc, *_ in handles:
            if isinstance(proc, subprocess.Popen):
                try:
                    proc.wait(timeout=max(1.0, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    proc.kill()
            else:
                proc.join(timeout=max(1.0, deadline - time.time()))
                if proc.exitcode is None:
                    proc.kill()
                    proc.join()
        return "the running runs were stopped after their current step (checkpoints saved)"


def _last_error(log: Path, rc: int) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    for i, ln in enumerate(lines):
        if ln.startswith("error:"):
            return " ".join(lines[i:i + 4])[:600]
    return (lines[-1][:600] if lines else "no output") + f" (exit code {rc})"


class _Submitit(_Backend):
    """One submitit job per run (SLURM on a cluster; cluster='local' runs them as local processes)."""

    kind = "submitit"

    def __init__(
        self,
        suite: Suite,
        cluster: str | None = None,
        slurm_partition: str | None = None,
        gpus_per_node: int | None = None,
        tasks_per_node: int | None = None,
        timeout_min: int = 240,
        cpus_per_task: int | None = None,
        mem_gb: float | None = None,
    ) -> None:
        try:
            import submitit
        except ImportError:
            raise UserError("--executor submitit needs the submitit package: pip install submitit.") from None
        folder = suite.dir / "submitit"
        try:
            self.executor = submitit.AutoExecutor(folder=str(folder) + "/%j", cluster=cluster)
        except (ValueError, RuntimeError) as e:
            raise UserError(f"submitit could not start an executor (cluster {cluster or 'auto'}): {e}. "
                            "Pass --cluster slurm|local, or use --executor local.") from None
        if gpus_per_node is None:
            gpus_per_node = 1 if self.executor.cluster == "slurm" else _local_gpus()
        if tasks_per_node is None:  # one process per GPU, joined by torch.distributed in run_job
            tasks_per_node = max(gpus_per_node, 1)
        params: dict[str, Any] = dict(
            name=f"vecaf-{suite.name}",
            timeout_min=timeout_min,
            nodes=1,
            tasks_per_node=tasks_per_node,
            gpus_per_node=gpus_per_node,
            cpus_per_task=cpus_per_task,
            mem_gb=mem_gb,
            slurm_partition=slurm_partition,
        )
        self.executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
        self.cluster = self.executor.cluster

    def start(self, run: SuiteRun, resume: bool) -> tuple[Any, str | None, str | None]:
        job = self.executor.submit(SuiteJob(run.config.to_dict(), str(run.run_dir)), resume)
        return job, str(job.job_id), str(job.paths.stderr)

    def poll(self, handle: Any) -> Outcome | None:
        job = handle
        if not job.done():
            return None
        log = f"{job.paths.stdout} / {job.paths.stderr}"
        try:
            result = job.results()[0]  # one result per task (rank); rank 0's is the run's
        except Exception as e:
            text = str(e)
            status = "interrupted" if "RunInterrupted" in text else "failed"
            return Outcome(status, error=_exception_line(text) or type(e).__name__, log=log)
        if result.get("status") == "interrupted":
            return Outcome("interrupted", error=result.get("error"), log=log)
        return Outcome("finished", log=log, test_top1=result.get("test_top1"))

    def interrupt(self, handles: list[Any]) -> str:
        ids = ", ".join(str(j.job_id) for j in handles)
        return (f"the {self.cluster} jobs {ids} keep running (cancel them with scancel if you want them stopped); "
                "run the suite again once they have ended: finished runs are skipped")


def _exception_line(text: str) -> str | None:
    """'UserError: unknown config key …' out of a job's traceback (submitit's message ends in log paths)."""
    found = None
    for line in text.splitlines():
        m = re.match(r"^\s*(?:[\w]+\.)*(\w*(?:Error|Exception|Interrupted|Exit)\b.*)$", line)
        if m:
            found = m.group(1)
    return found[:600] if found else None


def _local_gpus() -> int:
    try:
        import torch

        return 1 if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _run_pooled(
    todo: list[Planned],
    planned: list[Planned],
    ledger: Ledger,
    backend: _Backend,
    max_parallel: int,
    console: Console,
    poll_seconds: float,
) -> None:
    """Up to `max_parallel` runs at once; a feature group's first run goes alone, so its features are
    extracted once and the others of the group read the cache."""
    warm = {feature_group(p.run.config) for p in planned if p.action in ("skip", "resume")}
    warming: dict[str, str] = {}
    pending = list(todo)
    inflight: dict[str, tuple[Planned, Any, float]] = {}
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"suite {ledger.suite.name}", total=len(planned),
                                 completed=len(planned) - len(todo), info=_counts_text(ledger, False))
        try:
            while pending or inflight:
                for p in list(pending):
                    if len(inflight) >= max_parallel:
                        break
                    group = feature_group(p.run.config)
                    if group not in warm and group in warming:
                        continue  # its features are being extracted by another run
                    handle, job_id, log = backend.start(p.run, p.action == "resume")
                    status = "submitted" if backend.kind == "submitit" else "running"
                    ledger.update(p.run.run_id, status=status, job_id=job_id, log=log, started=_now())
                    if group not in warm:
                        warming[group] = p.run.run_id
                    inflight[p.run.run_id] = (p, handle, time.time())
                    pending.remove(p)
                    progress.console.print(f"started {p.run.run_id}" + (f" (job {job_id})" if job_id else ""))
                time.sleep(poll_seconds)
                for rid, (p, handle, t0) in list(inflight.items()):
                    outcome = backend.poll(handle)
                    if outcome is None:
                        continue
                    del inflight[rid]
                    group = feature_group(p.run.config)
                    if warming.get(group) == rid:
                        del warming[group]
                    if outcome.status == "finished":
                        warm.add(group)
                    ledger.update(rid, status=outcome.status, error=outcome.error, log=outcome.log,
                                  test_top1=outcome.test_top1, seconds=time.time() - t0)
                    colour = {"finished": "green", "failed": "red"}.get(outcome.status, "yellow")
                    progress.console.print(
                        f"[{colour}]{outcome.status}[/] {rid}"
                        + (f": {outcome.error} (log: {outcome.log})" if outcome.status != "finished" else ""),
                        highlight=False,
                    )
                    progress.advance(task)
                progress.update(task, info=_counts_text(ledger, False))
        except KeyboardInterrupt:
            what = backend.interrupt([h for _, h, _ in inflight.values()])
            for rid, (_, handle, t0) in inflight.items():
                outcome = backend.poll(handle) if backend.kind != "submitit" else None
                if outcome is not None:
                    ledger.update(rid, status=outcome.status, error=outcome.error, seconds=time.time() - t0)
            raise SuiteInterrupted(f"suite {ledger.suite.name} interrupted: {what}.") from None


# ---------------------------------------------------------------------------------------------
# printing


def report_table(report: SuiteReport) -> Table:
    table = Table(title=f"suite {report.suite.name}: {_counts_text(report.ledger)}", title_justify="left")
    table.add_column("run id", no_wrap=True)
    for col in ("status", "test top-1", "seconds"):
        table.add_column(col, no_wrap=True)
    table.add_column("note", overflow="fold")
    for e in report.ledger.entries.values():
        colour = {"finished": "green", "skipped": "dim", "failed": "red"}.get(e["status"], "yellow")
        top1 = f"{e['test_top1']:.2f}" if isinstance(e.get("test_top1"), (int, float)) else ""
        secs = f"{e['seconds']:.0f}" if isinstance(e.get("seconds"), (int, float)) else ""
        note = (e.get("error") or "") + (f" (log: {e['log']})" if e["status"] == "failed" and e.get("log") else "")
        if e.get("found"):
            note = f"{note} (before: {e['found']})" if note else f"before: {e['found']}"
        table.add_row(e["run_id"], f"[{colour}]{e['status']}[/]", top1, secs, escape(note))
    return table
