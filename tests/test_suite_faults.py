"""Faults as suites and the leaderboard read them: a damaged summary.json is "damaged" with its
path (never "unfinished"), failed and half-made folders are named and run again (the old folder
kept in .attempts/), `--set` on a grid key replaces that axis and says so, and a submitit job
preempted with SIGUSR2 requeues and resumes to the result of an uninterrupted run."""

import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from suite_kit import TINY_BASE, invoke, suite_app, whole_pool, write_suite

from vecaf_bench.board import rules as lb
from vecaf_bench.config import dump_yaml
from vecaf_bench.suite import execute as ex
from vecaf_bench.suite import grid as st

TRUNCATED = '{"run_id": "x", "status": "finished", "test_top1": 8'


@pytest.fixture
def app():
    return suite_app()


def suite_file(tmp_path: Path, **over) -> Path:
    return write_suite(tmp_path, "f", **over)



def faulty_folders(tmp_path: Path) -> tuple[st.Suite, list[Path]]:
    """Four runs: a truncated summary, a failed run (with a checkpoint), a half-made folder, an
    interrupted run with its checkpoint."""
    s = st.load_suite(suite_file(tmp_path), out=str(tmp_path / "out"), whole_pool=whole_pool)
    dirs = [r.run_dir for r in s.runs]
    for run in s.runs:
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "config.yaml").write_text(dump_yaml(run.config))
    damaged, failed, half, interrupted = dirs
    (damaged / "summary.json").write_text(TRUNCATED)
    (damaged / "events.jsonl").write_text("")
    (failed / "summary.json").write_text(json.dumps({"status": "failed", "error": "CUDA out of memory"}))
    (failed / "checkpoint.pt").write_bytes(b"x")
    (interrupted / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    (interrupted / "checkpoint.pt").write_bytes(b"x")
    return s, dirs


def test_plan_names_damaged_failed_and_half_made_folders_and_runs_them_again(tmp_path):
    s, (damaged, failed, half, interrupted) = faulty_folders(tmp_path)
    planned = st.plan(s)
    assert [(p.action, p.stale, p.found.kind) for p in planned] == [
        ("start", True, "damaged"), ("start", True, "failed"), ("start", True, "half-made"),
        ("resume", False, "interrupted")]
    notes = [p.note for p in planned]
    assert notes[0].startswith(f"damaged: {damaged / 'summary.json'} cannot be read (not valid JSON")
    assert notes[0].endswith("; run again (the old folder goes to .attempts/)")
    assert notes[1] == (f"failed: {failed} (error: CUDA out of memory); run again (the old folder goes to "
                        ".attempts/)")
    assert notes[2].startswith(f"half-made: {half} holds config.yaml and no events, checkpoint or summary")
    assert notes[3] == ""
    assert not any("unfinished" in n for n in notes)


def test_dry_run_shows_what_each_folder_held(app, tmp_path):
    faulty_folders(tmp_path)
    r = invoke(app, "suite", suite_file(tmp_path), "--out", tmp_path / "out", "--dry-run")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    damaged, failed, half = (st.load_suite(suite_file(tmp_path), out=str(tmp_path / "out"),
                                           whole_pool=whole_pool).runs[i].run_dir for i in range(3))
    assert "start (damaged folder moved aside)" in text and "start (failed folder moved aside)" in text
    assert f"{damaged.name}: damaged: {damaged / 'summary.json'} cannot be read (not valid JSON" in text
    assert f"{failed.name}: failed: {failed} (error: CUDA out of memory); run again" in text
    assert f"{half.name}: half-made: {half} holds config.yaml" in text and "unfinished" not in text
    assert sorted(p.name for p in (tmp_path / "out" / "f").iterdir()) == sorted(r.run_id for r in st.load_suite(
        suite_file(tmp_path), out=str(tmp_path / "out"), whole_pool=whole_pool).runs), "a dry run moves nothing"


class FinishingBackend(ex._Backend):
    """Stands in for the run processes: each run 'finishes' at its first poll."""

    kind = "fake"

    def __init__(self, *args):
        self.started = []

    def start(self, run, resume):
        self.started.append((run.run_id, resume))
        return run.run_id, None, None

    def poll(self, handle):
        return ex.Outcome("finished", test_top1=1.0)

    def interrupt(self, handles):
        return ""


def test_a_rerun_moves_failed_damaged_and_half_made_folders_aside_and_says_so(tmp_path, monkeypatch):
    s, (damaged, failed, half, interrupted) = faulty_folders(tmp_path)
    backend = FinishingBackend()
    monkeypatch.setattr(ex, "_Processes", lambda *a: backend)
    console = Console(record=True, width=400)
    ex.run_suite(s, executor="local", max_parallel=2, console=console, poll_seconds=0)
    text = console.export_text()
    assert "1 damaged, 1 failed, 1 half-made folder(s) run again" in text
    attempts = tmp_path / "out" / "f" / ".attempts"
    for d, words in ((damaged, f"damaged: {damaged / 'summary.json'} cannot be read"),
                     (failed, f"failed: {failed} (error: CUDA out of memory)"), (half, f"half-made: {half} holds")):
        assert f"{words}" in text and f"moved to {attempts / (d.name + '.1')}, run again" in text
        assert (attempts / f"{d.name}.1" / "config.yaml").is_file() and not d.exists()
    assert interrupted.is_dir(), "an interrupted run with its checkpoint is resumed in place"
    assert sorted(backend.started) == sorted([(damaged.name, False), (failed.name, False), (half.name, False),
                                              (interrupted.name, True)])
    ledger = json.loads((tmp_path / "out" / "f" / "suite.json").read_text())
    found = {e["run_id"]: e["found"] for e in ledger["runs"]}
    assert found[failed.name] == (f"failed: {failed} (error: CUDA out of memory); moved to "
                                  f"{attempts / (failed.name + '.1')}")
    assert found[interrupted.name] is None


def write_summary(d: Path, seed: int, top1: float, status: str = "finished", **extra) -> None:
    d.mkdir(parents=True)
    (d / "config.yaml").write_text(yaml.safe_dump({"selector": "random", "selector_options": {}}))
    (d / "summary.json").write_text(json.dumps({
        "run_id": d.name, "status": status, "selector": "random", "dataset": "toy", "seed": seed, "label_budget": 10,
        "batch_budget": 4, "steps": 4, "pool_size": 100, "test_top1": top1,
        "curve": [{"step": 4, "top1": top1}], **extra}))


def test_the_leaderboard_names_every_folder_it_leaves_out(tmp_path):
    root = tmp_path / "runs"
    write_summary(root / "ok-s0", 0, 50.0)
    write_summary(root / "failed-s1", 1, 0.0, status="failed", error="ValueError: boom")
    (root / "damaged-s2").mkdir()
    (root / "damaged-s2" / "summary.json").write_text(TRUNCATED)
    (root / "half-s3").mkdir()
    (root / "half-s3" / "config.yaml").write_text(yaml.safe_dump({"selector": "random"}))
    (root / "gone-s4").mkdir()
    (root / "gone-s4" / "summary.json").write_text(json.dumps({"status": "finished", "selector": "random",
                                                                "test_top1": 1.0}))
    write_summary(root / ".attempts" / "ok-s0.1", 0, 99.0, status="failed", error="old")  # superseded
    (root / "ok-s0" / "wandb" / "run-1" / "files").mkdir(parents=True)  # W&B's own config.yaml is no run
    (root / "ok-s0" / "wandb" / "run-1" / "files" / "config.yaml").write_text("selector: {value: random}\n")

    scan = lb.scan_runs(root)
    assert [(r.seed, r.top1) for r in scan.records] == [(0, 50.0)], "only the finished run is in the results"
    assert {k: len(v) for k, v in scan.left_out.items()} == {"damaged": 2, "failed": 1, "half-made": 1}
    notes = scan.notes()
    assert notes[0].startswith("2 damaged run(s) left out (its summary.json cannot be read")
    assert f"{root / 'damaged-s2' / 'summary.json'} (not valid JSON" in notes[0]
    assert f"{root / 'gone-s4' / 'summary.json'} (finished, but it lacks 'dataset')" in notes[0]
    assert notes[1] == (f"1 failed run(s) left out (the run recorded its failure: fix the cause and run it again (a "
                        f"suite re-runs failed runs)): {root / 'failed-s1'} (ValueError: boom).")
    assert notes[2].startswith("1 half-made run(s) left out") and str(root / "half-s3") in notes[2]
    assert not any("unfinished" in n for n in notes)
    assert lb.load_records(root)[1] == 4


def test_leaderboard_cli_says_damaged_with_the_path_never_unfinished(app, tmp_path):
    root = tmp_path / "runs"
    (root / "r-s0").mkdir(parents=True)
    (root / "r-s0" / "summary.json").write_text(TRUNCATED)
    r = invoke(app, "leaderboard", root)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "no finished runs in" in text and "1 damaged run(s) left out" in text
    assert f"{root / 'r-s0' / 'summary.json'} (not valid JSON" in text and "unfinished" not in text
    write_summary(root / "ok-s1", 1, 60.0)
    r = invoke(app, "leaderboard", root, "--format", "markdown")
    assert r.exit_code == 0, r.output
    assert "- 1 damaged run(s) left out" in r.output and "unfinished" not in r.output


# ---- --set on the grid -----------------------------------------------------------------------


def test_set_on_a_grid_key_replaces_that_axis_and_says_so(app, tmp_path):
    path = suite_file(tmp_path, seeds=[0, 1, 2], datasets=["mnist"])
    r = invoke(app, "suite", path, "--out", tmp_path / "out", "--dry-run", "--set", "seed=3", "--set",
               "dataset=digits", "--set", "label_budget=[5, 20]")
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert "--set seed=3 replaces the grid axis seed [0, 1, 2]." in text
    assert "--set dataset=digits replaces the grid axis dataset [mnist]." in text
    assert "--set label_budget=[5, 20] replaces the grid axis label_budget [10]." in text
    assert "4 runs" in text and "f-digits-5-b4-random-s3" in text and "f-digits-20-b4-coreset-s3" in text
    assert "mnist" not in text.replace("[mnist]", "")


def test_set_replaces_per_dataset_axes_and_entry_values_too(tmp_path):
    data = yaml.safe_load(suite_file(tmp_path).read_text())
    data["datasets"] = [{"name": "digits", "seeds": [7], "batch_budgets": [6], "image_size": 48}]
    s = st.expand_suite(data, "f.yaml", out=str(tmp_path), whole_pool=whole_pool,
                        sets=["seeds=[1, 2]", "batch_budget=5", "image_size=40", "selector=coreset"])
    assert [r.run_id for r in s.runs] == ["f-digits-10-b5-coreset-s1", "f-digits-10-b5-coreset-s2"]
    assert {r.config.image_size for r in s.runs} == {40}
    assert s.notes == ["--set seeds=[1, 2] replaces the grid axis seeds [7]",
                       "--set batch_budget=5 replaces the grid axis batch_budget [6]",
                       "--set selector=coreset replaces the grid axis selector [random, coreset]",
                       "--set image_size=40 replaces image_size 48 under dataset 'digits'"]


@pytest.mark.parametrize("sets, words", [
    (["run_name=x"], "--set run_name=x: a suite names every run's folder from its grid"),
    (["trian.lr=1"], "unknown config key 'trian.lr' (--set). Did you mean 'train.lr'?"),
    (["train.lr=abc"], "config key 'train.lr' (--set) must be"),
    (["seed=[]"], "--set seed=[] replaces the grid axis seeds: give one value or a list"),
])
def test_set_errors_name_the_flag_not_the_suite_file(app, tmp_path, sets, words):
    args = [a for s in sets for a in ("--set", s)]
    r = invoke(app, "suite", suite_file(tmp_path), "--out", tmp_path / "out", "--dry-run", *args)
    text = " ".join(r.output.split())
    assert r.exit_code == 2 and words in text and "Traceback" not in r.output
    assert "under 'base'" not in text


# ---- preemption under submitit -----------------------------------------------------------------


@pytest.mark.parametrize("files, resume, finished", [
    ({"summary.json": '{"status": "interrupted"}', "checkpoint.pt": "x"}, True, False),
    ({"checkpoint.pt": "x", "events.jsonl": ""}, True, False),  # killed after a periodic checkpoint
    ({"summary.json": '{"status": "failed", "error": "boom"}', "checkpoint.pt": "x"}, False, False),
    ({"config.yaml": "selector: random\n"}, False, False),  # preempted before its first checkpoint
    ({"summary.json": '{"status": "finished", "test_top1": 5.0}'}, False, True),
])
def test_the_job_requeues_itself_to_resume_from_the_checkpoint(tmp_path, files, resume, finished):
    """What submitit requeues: the same job, resuming when the run has a checkpoint (a failed run starts over)."""
    pytest.importorskip("submitit")
    run_dir = tmp_path / "f" / "f-digits-10-b4-random-s0"
    run_dir.mkdir(parents=True)
    for name, text in files.items():
        (run_dir / name).write_text(text)
    job = ex.SuiteJob({"selector": "random"}, str(run_dir))
    again = job.checkpoint(False)
    assert again.function is job and again.args == ()
    assert again.kwargs == {"resume": resume, "finished": finished}
    if finished:
        assert job(finished=True) == {"run_id": None, "status": "finished", "test_top1": 5.0}


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _wait(condition, what: str, seconds: float = 120.0):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"waited {seconds:.0f} s for {what}")


PREEMPT = {"selectors": ["random"], "seeds": [0], "label_budgets": [20], "batch_budgets": [80],
           "base": {**TINY_BASE, "eval_every": 20}}
needs_proc = pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the job's task through /proc")


@contextmanager
def one_thread():
    """Torch on one thread here, and in the job processes (OMP_NUM_THREADS): results of a tiny run
    differ with the thread count, and the interrupted runs are compared with the reference exactly."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("OMP_NUM_THREADS", "1")
            yield mp
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, shared_cache) -> Path:
    """The uninterrupted run (in this process) that every interrupted one must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    with one_thread() as mp:
        mp.setenv("VECAF_BENCH_CACHE", str(shared_cache))
        mp.setenv("WANDB_MODE", "disabled")
        mp.setenv("HF_HUB_OFFLINE", "1")
        plain = st.load_suite(suite_file(tmp, **PREEMPT), out=str(tmp / "plain"), whole_pool=whole_pool)
        ex.run_suite(plain, console=Console(quiet=True))
    return plain.runs[0].run_dir


def _same_result(run_dir: Path, reference: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    expected = json.loads((reference / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps"] == 80
    assert summary["test_top1"] == expected["test_top1"]
    assert (run_dir / "selected.json").read_text() == (reference / "selected.json").read_text()


def _signal_during_training(s: st.Suite, to_task: bool, signum: int) -> dict:
    """Runs the suite under submitit's local executor in a thread; once training has started, sends
    `signum` to the job's task (as the controller forwards a time-out's SIGUSR2) or to the job itself
    (its controller, which passes SIGTERM on to the task, as SLURM does)."""
    done: dict = {}
    options = {"cluster": "local", "timeout_min": 60}  # far from its time limit: a preemption, not a time-out
    worker = threading.Thread(target=lambda: done.update(report=ex.run_suite(
        s, executor="submitit", console=Console(quiet=True), submitit_options=options, poll_seconds=0.1)))
    worker.start()
    try:
        ledger = s.dir / "suite.json"
        job = _wait(lambda: ledger.is_file() and json.loads(ledger.read_text())["runs"][0]["job_id"], "the job id")
        _wait(lambda: '"event": "round"' in _read(s.runs[0].run_dir / "events.jsonl"), "training to start")
        target = _wait(lambda: _children(int(job)), "the job's task")[0] if to_task else int(job)
        os.kill(target, signum)
    finally:
        worker.join(timeout=180)
    assert not worker.is_alive()
    return done["report"].ledger.entries[s.runs[0].run_id]


@pytest.mark.slow
@needs_proc
def test_a_preempted_submitit_job_requeues_and_resumes_to_the_uninterrupted_result(tmp_path, reference):
    """SIGUSR2 to the job's task, as submitit's local controller sends it before a time-out (SLURM:
    --signal USR2@90): the run checkpoints, the job requeues itself and resumes; the result equals an
    uninterrupted run's. (`LocalJob._interrupt()` signals the controller process, which SIGUSR2 kills.)"""
    pytest.importorskip("submitit")
    s = st.load_suite(suite_file(tmp_path, **PREEMPT), out=str(tmp_path / "pre"), whole_pool=whole_pool)
    with one_thread():
        entry = _signal_during_training(s, to_task=True, signum=signal.SIGUSR2)
    assert entry["status"] == "finished", entry
    run_dir = s.runs[0].run_dir
    events = [json.loads(line)["event"] for line in _read(run_dir / "events.jsonl").splitlines()]
    assert events[0] == "start" and "resume" in events and events[-1] == "end", events
    logs = " ".join(p.read_text() for p in (s.dir / "submitit").glob("*/*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs, "submitit requeued the job itself"
    assert "SIGUSR2: stopping after the current step and saving a checkpoint" in logs
    _same_result(run_dir, reference)
    assert entry["test_top1"] == json.loads((reference / "summary.json").read_text())["test_top1"]
    assert not (s.dir / ".attempts").exists(), "resumed in place, not started over"


@pytest.mark.slow
@needs_proc
def test_a_sigtermed_submitit_job_ends_interrupted_and_the_suite_resumes_it(tmp_path, reference):
    """SIGTERM (scancel; SLURM's preemption) to the job: the run saves its checkpoint, the job ends
    'interrupted' (no requeue, as submitit does for SIGTERM), and the suite's next run resumes it."""
    pytest.importorskip("submitit")
    path = suite_file(tmp_path, **PREEMPT)
    s = st.load_suite(path, out=str(tmp_path / "term"), whole_pool=whole_pool)
    with one_thread():
        entry = _signal_during_training(s, to_task=False, signum=signal.SIGTERM)
    assert entry["status"] == "interrupted", entry
    assert "interrupted by SIGTERM" in entry["error"] and "run the suite again to resume it" in entry["error"]
    run_dir = s.runs[0].run_dir
    assert (run_dir / "checkpoint.pt").is_file()
    again = st.load_suite(path, out=str(tmp_path / "term"), whole_pool=whole_pool)
    assert [p.action for p in st.plan(again)] == ["resume"]
    with one_thread():
        report = ex.run_suite(again, console=Console(quiet=True))
    assert report.ledger.entries[s.runs[0].run_id]["status"] == "finished"
    _same_result(run_dir, reference)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
