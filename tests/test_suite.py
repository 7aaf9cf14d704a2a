"""Suites: grid expansion, deterministic run ids, the matching check, planning a re-run (skip,
resume, stale, edited config), the scheduler's feature gate, and real runs on digits in-process,
in subprocesses and as a submitit job (local executor); a second run of a suite recomputes nothing."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console
from suite_kit import invoke, suite_app, whole_pool, write_suite

from vecaf_bench.config import dump_yaml
from vecaf_bench.errors import UserError
from vecaf_bench.suite import execute as ex
from vecaf_bench.suite import grid as st


@pytest.fixture
def app():
    return suite_app()


def tiny_suite(tmp_path: Path, **over) -> Path:
    return write_suite(tmp_path, "tiny", **over)



GRID = {
    "name": "g",
    "base": {"backbone": "timm:resnet18", "train": {"lr": 0.05}},
    "selectors": ["random", {"name": "vecaf", "rounds": 3, "selector_options": {"iterations": 30}}, "full"],
    "datasets": [{"name": "mnist", "label_budgets": ["2.5%", "5%"]},
                 {"name": "/data/My Set", "label_budgets": [100], "seeds": [3], "image_size": 48}],
    "seeds": [0, 1],
    "batch_budgets": [100, 200],
    "shifts": {"mnist": ["corruption:fog:3"]},
}


def test_grid_expansion_and_deterministic_run_ids(tmp_path):
    s = st.expand_suite(GRID, "grid.yaml", out=str(tmp_path / "out"), whole_pool=whole_pool)
    # mnist: (random + vecaf) x 2 budgets x 2 batch budgets x 2 seeds + full x 2 batch budgets x 2 seeds
    # My Set: (random + vecaf) x 1 budget x 2 x 1 seed + full x 2 x 1
    assert len(s.runs) == 16 + 4 + 4 + 2
    ids = [r.run_id for r in s.runs]
    assert len(set(ids)) == len(ids)
    assert "g-mnist-2.5pct-b100-random-s0" in ids and "g-mnist-all-b200-full-s1" in ids
    assert "g-My-Set-100-b200-vecaf-s3" in ids and "g-My-Set-all-b100-full-s3" in ids
    run = next(r for r in s.runs if r.run_id == "g-mnist-5pct-b200-vecaf-s1")
    cfg = run.config
    assert (cfg.selector, cfg.dataset, cfg.label_budget, cfg.batch_budget, cfg.seed) == ("vecaf", "mnist", "5%", 200, 1)
    assert cfg.rounds == 3 and cfg.selector_options == {"iterations": 30} and cfg.train.lr == 0.05
    assert cfg.shifts == ["corruption:fog:3"] and cfg.backbone == "timm:resnet18"
    assert cfg.out == str(tmp_path / "out" / "g") and cfg.run_name == run.run_id and cfg.wandb_group == "g"
    assert run.run_dir == tmp_path / "out" / "g" / run.run_id
    other = next(r for r in s.runs if r.point.dataset == "/data/My Set")
    assert other.config.shifts == [] and other.config.image_size == 48
    assert all(r.config.rounds == 1 for r in s.runs if r.point.selector != "vecaf")
    # the same YAML gives the same ids and configs, in the same order
    again = st.expand_suite(GRID, "grid.yaml", out=str(tmp_path / "out"), whole_pool=whole_pool)
    assert [(r.run_id, r.config) for r in again.runs] == [(r.run_id, r.config) for r in s.runs]


@pytest.mark.parametrize(
    "override, key",
    [({"train": {"lr": 0.1}}, "train.lr"), ({"batch_size": 16}, "batch_size"), ({"image_size": 64}, "image_size"),
     ({"weights": "none"}, "weights"), ({"eval_every": 7}, "eval_every")],
)
def test_a_per_selector_override_that_breaks_matching_is_refused(tmp_path, override, key):
    data = {**GRID, "selectors": ["random", {"name": "coreset", **override}]}
    with pytest.raises(UserError) as e:
        st.expand_suite(data, "grid.yaml", out=str(tmp_path), whole_pool=whole_pool)
    msg = str(e.value)
    assert f"'{key}' differs" in msg and "breaks matched budgets" in msg
    assert "g-mnist-2.5pct-b100-coreset-s0" in msg and "g-mnist-2.5pct-b100-random-s0" in msg


def test_selector_specific_keys_are_allowed_and_grid_keys_refused(tmp_path):
    ok = {**GRID, "selectors": ["random", {"name": "vecaf", "rounds": 2, "text_encoder": "minilm"}]}
    assert st.expand_suite(ok, "g.yaml", out=str(tmp_path), whole_pool=whole_pool).runs
    for entry, words in (({"name": "random", "seeds": [5]}, "'seeds'"),
                         ({"name": "random", "batch_budget": 10}, "'batch_budget'"),
                         ({"name": "random", "label_budget": 10}, "set by the suite's grid")):
        with pytest.raises(UserError, match=words):
            st.expand_suite({**GRID, "selectors": ["coreset", entry]}, "g.yaml", whole_pool=whole_pool)
    with pytest.raises(UserError, match="listed twice"):
        st.expand_suite({**GRID, "selectors": ["random", "random"]}, "g.yaml", whole_pool=whole_pool)


def test_unknown_keys_get_the_config_message(tmp_path):
    with pytest.raises(UserError, match=r"unknown config key 'train.lrr'.*Did you mean 'train.lr'\?"):
        st.expand_suite({**GRID, "base": {"train": {"lrr": 1}}}, "g.yaml", whole_pool=whole_pool)
    with pytest.raises(UserError, match=r"unknown suite key 'selector'.*Did you mean 'selectors'\?"):
        st.expand_suite({**GRID, "selector": "random"}, "g.yaml", whole_pool=whole_pool)
    with pytest.raises(UserError, match=r"both batch_budget \(5, under 'base'\) and batch_budgets"):
        st.expand_suite({**GRID, "base": {"batch_budget": 5}}, "g.yaml", whole_pool=whole_pool)
    with pytest.raises(UserError, match="label budget '0' must be positive"):
        st.expand_suite({**GRID, "datasets": [{"name": "mnist", "label_budgets": [0]}]}, "g", whole_pool=whole_pool)


def test_cli_refuses_an_unmatched_suite_with_exit_2(app, tmp_path):
    path = tiny_suite(tmp_path, selectors=["random", {"name": "coreset", "train": {"lr": 0.5}}])
    r = invoke(app, "suite", path, "--out", tmp_path / "out")
    assert r.exit_code == 2 and "'train.lr' differs" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()
    r = invoke(app, "suite", path.with_name("missing.yaml"))
    assert r.exit_code == 2 and "does not exist" in r.output
    r = invoke(app, "suite", tiny_suite(tmp_path, selectors=["random", "coresett"]), "--dry-run")
    assert r.exit_code == 2 and "unknown selector 'coresett'" in r.output and "Did you mean 'coreset'?" in r.output


def test_dry_run_lists_the_runs_and_starts_none(app, tmp_path):
    r = invoke(app, "suite", tiny_suite(tmp_path), "--out", tmp_path / "out", "--dry-run")
    assert r.exit_code == 0, r.output
    assert "4 runs" in r.output and "matched budgets: checked" in r.output
    assert not (tmp_path / "out").exists()


def test_plan_skips_resumes_restarts_and_refuses_an_edited_config(tmp_path):
    s = st.load_suite(tiny_suite(tmp_path), out=str(tmp_path / "out"), whole_pool=whole_pool)
    a, b, c, d = s.runs
    for run in (a, b, c):
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "config.yaml").write_text(dump_yaml(run.config))
    (a.run_dir / "summary.json").write_text(json.dumps({"status": "finished", "test_top1": 50.0}))
    (b.run_dir / "checkpoint.pt").write_bytes(b"x")
    (b.run_dir / "summary.json").write_text(json.dumps({"status": "interrupted"}))
    assert [(p.action, p.stale) for p in st.plan(s)] == [("skip", False), ("resume", False), ("start", True),
                                                          ("start", False)]
    # a different device or output folder does not make results stale
    cfg = yaml.safe_load((a.run_dir / "config.yaml").read_text())
    (a.run_dir / "config.yaml").write_text(yaml.safe_dump({**cfg, "device": "cuda", "out": "elsewhere"}))
    assert st.plan(s)[0].action == "skip"
    # a different learning rate does
    cfg["train"]["lr"] = 0.5
    (a.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(UserError, match=r"another config.*train.lr: 0.5 there, 0.02 in the suite"):
        st.plan(s)


class FakeBackend(ex._Backend):
    """Finishes each run on its second poll; records what was in flight when each run started."""

    kind = "fake"

    def __init__(self):
        self.started, self.polls, self.inflight = [], {}, set()

    def start(self, run, resume):
        self.started.append((run.run_id, sorted(self.inflight)))
        self.inflight.add(run.run_id)
        return run.run_id, None, None

    def poll(self, handle):
        self.polls[handle] = self.polls.get(handle, 0) + 1
        if self.polls[handle] < 2:
            return None
        self.inflight.discard(handle)
        return ex.Outcome("finished", test_top1=1.0)

    def interrupt(self, handles):
        return ""


def test_first_run_of_a_feature_group_goes_alone(tmp_path):
    data = {"name": "gate", "selectors": ["random", "coreset"], "datasets": ["a", "b"], "label_budgets": [10],
            "seeds": [0, 1]}
    s = st.expand_suite(data, "gate.yaml", out=str(tmp_path), whole_pool=whole_pool)
    planned = st.plan(s)
    ledger = ex.Ledger(s, planned, "fake")
    backend = FakeBackend()
    ex._run_pooled(planned, planned, ledger, backend, 8, Console(quiet=True), poll_seconds=0)
    # first wave: one run per dataset (feature group), though 8 could run at once
    assert backend.started[:2] == [("gate-a-10-b150-random-s0", []),
                                   ("gate-b-10-b150-random-s0", ["gate-a-10-b150-random-s0"])]
    for rid, running in backend.started[2:]:  # the rest of a group start once its first run finished
        group_first = "gate-a-10-b150-random-s0" if "-a-" in rid else "gate-b-10-b150-random-s0"
        assert group_first not in running
    assert ledger.counts()["finished"] == 8
    saved = json.loads((tmp_path / "gate" / "suite.json").read_text())
    assert saved["counts"]["finished"] == 8 and len(saved["runs"]) == 8


def _mtimes(out: Path) -> dict:
    return {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "suite.json"}


@pytest.mark.slow
def test_suite_end_to_end_then_a_rerun_skips_everything(app, tmp_path):
    path, out = tiny_suite(tmp_path), tmp_path / "out"
    r = invoke(app, "suite", path, "--out", out)
    assert r.exit_code == 0, r.output
    ids = ["tiny-digits-10-b4-random-s0", "tiny-digits-10-b4-random-s1", "tiny-digits-10-b4-coreset-s0",
           "tiny-digits-10-b4-coreset-s1"]
    assert sorted(p.name for p in (out / "tiny").iterdir() if p.is_dir()) == sorted(ids)
    summaries = [json.loads((out / "tiny" / i / "summary.json").read_text()) for i in ids]
    assert [(s["status"], s["steps"], s["run_id"]) for s in summaries] == [("finished", 4, i) for i in ids]
    assert sum(not s["features"]["cached"] for s in summaries) <= 1  # features extracted once at most
    ledger = json.loads((out / "tiny" / "suite.json").read_text())
    assert ledger["counts"]["finished"] == 4 and ledger["counts"]["failed"] == 0
    assert [e["status"] for e in ledger["runs"]] == ["finished"] * 4
    assert ledger["runs"][0]["config"]["run_name"] == ledger["runs"][0]["run_id"]
    before = _mtimes(out)

    again = invoke(app, "suite", path, "--out", out)
    assert again.exit_code == 0, again.output
    assert "4 finished earlier (skipped), 0 to resume, 0 to start" in again.output.replace("\n", " ")
    assert _mtimes(out) == before  # nothing recomputed, nothing rewritten
    ledger = json.loads((out / "tiny" / "suite.json").read_text())
    assert ledger["counts"]["skipped"] == 4 and ledger["counts"]["finished"] == 0
    assert [e["test_top1"] for e in ledger["runs"]] == [s["test_top1"] for s in summaries]

    board = invoke(app, "leaderboard", out / "tiny", "--format", "csv")
    assert board.exit_code == 0 and board.output.count("digits,") == 2


@pytest.mark.slow
def test_parallel_processes_executor(app, tmp_path):
    path, out = tiny_suite(tmp_path, selectors=["random"], seeds=[2]), tmp_path / "out"
    r = invoke(app, "suite", path, "--out", out, "--max-parallel", "2")
    assert r.exit_code == 0, r.output
    ledger = json.loads((out / "tiny" / "suite.json").read_text())
    entry = ledger["runs"][0]
    assert ledger["executor"] == "local-processes" and entry["status"] == "finished", entry
    assert Path(entry["log"]).is_file() and (out / "tiny" / "configs" / f"{entry['run_id']}.yaml").is_file()
    assert json.loads((out / "tiny" / entry["run_id"] / "summary.json").read_text())["status"] == "finished"


@pytest.mark.slow
def test_submitit_local_executor_runs_a_one_run_suite(app, tmp_path):
    path, out = tiny_suite(tmp_path, selectors=["coreset"], seeds=[3]), tmp_path / "out"
    t0 = time.time()
    r = invoke(app, "suite", path, "--out", out, "--executor", "submitit", "--cluster", "local", "--timeout-min", "5")
    assert r.exit_code == 0, r.output
    ledger = json.loads((out / "tiny" / "suite.json").read_text())
    entry = ledger["runs"][0]
    assert ledger["executor"] == "submitit" and entry["status"] == "finished" and entry["job_id"], entry
    summary = json.loads((out / "tiny" / "tiny-digits-10-b4-coreset-s3" / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["selector"] == "coreset" and summary["seed"] == 3
    assert entry["test_top1"] == summary["test_top1"]
    assert list((out / "tiny" / "submitit").glob("*/*_log.err")), "submitit keeps the job's logs"
    assert time.time() - t0 < 120


def test_a_submitit_job_with_two_tasks_is_one_distributed_run(app, tmp_path, monkeypatch):
    """--tasks-per-node 2: two processes of one job join one run (gloo here, NCCL on GPUs), as under torchrun."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path, out = tiny_suite(tmp_path, selectors=["activeft"], seeds=[0]), tmp_path / "out"
    r = invoke(app, "suite", path, "--out", out, "--executor", "submitit", "--cluster", "local", "--tasks-per-node",
               "2", "--timeout-min", "5")
    assert r.exit_code == 0, r.output
    runs = [d for d in (out / "tiny").iterdir() if d.name.startswith("tiny-")]
    assert [d.name for d in runs] == ["tiny-digits-10-b4-activeft-s0"], "one run folder, written by rank 0"
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["world_size"] == 2 and summary["steps"] == 4


def test_local_runs_are_spread_over_the_visible_gpus(monkeypatch):
    from vecaf_bench.suite.execute import GpuSlots

    slots = GpuSlots(["2", "5"])
    assert [slots.take(), slots.take(), slots.take()] == ["2", "5", "2"], "least busy GPU first"
    slots.give("5")
    assert slots.take() == "5"
    assert GpuSlots(["0"]).take() is None, "one GPU: nothing to spread, the run sees it as it is"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,1")
    assert list(GpuSlots.visible().busy) == ["3", "1"], "a user's CUDA_VISIBLE_DEVICES is respected"


@pytest.mark.slow
def test_a_forked_run_process_keeps_the_command_lines_contract(tmp_path, shared_cache):
    """The suite's run processes are forked from a server that imported torch once; each must
    behave as `vecaf-bench run` would: exit 2 with the message on bad input, and on SIGINT stop
    after its step with a checkpoint and exit 130 (what the suite reads as 'interrupted')."""
    from vecaf_bench.suite import forked

    if not forked.available():
        pytest.skip("no fork server on this platform: the suite starts subprocesses")
    env = {**os.environ, "VECAF_BENCH_CACHE": str(shared_cache), "WANDB_MODE": "disabled"}
    bad = forked.start(["run", "--selector", "nosuch", "--out", str(tmp_path / "bad")], str(tmp_path / "bad.log"), env)
    bad.join(120)
    assert bad.exitcode == 2
    assert "error:" in (tmp_path / "bad.log").read_text() and "nosuch" in (tmp_path / "bad.log").read_text()

    out = tmp_path / "runs"
    args = ["run", "--dataset", "digits", "--label-budget", "20", "--batch-budget", "400", "--batch-size", "8",
            "--eval-every", "2", "--image-size", "32", "--out", str(out)]
    proc = forked.start(args, str(tmp_path / "run.log"), env)
    deadline = time.time() + 120
    while not any('"event": "eval"' in ev.read_text() for ev in out.glob("*/events.jsonl")):
        assert proc.exitcode is None and time.time() < deadline, (tmp_path / "run.log").read_text()
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGINT)
    proc.join(120)
    log = (tmp_path / "run.log").read_text()
    assert proc.exitcode == 130, log
    assert "Resume with: vecaf-bench run --resume" in log.replace("\n", "") and "Traceback" not in log
    assert list(out.glob("*/checkpoint.pt"))
