"""W&B for real: offline run files that hold what was logged; disabled mode writes nothing."""

import json

import pytest
from conftest import TINY, run_dirs, summary_of
from wandb_records import read_records


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def test_offline_run_holds_config_curve_and_summary(cli, tmp_path):
    r = cli("run", *TINY, "--seed", "4", "--wandb-mode", "offline", "--wandb-group", "suite-x", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    run_dir = run_dirs(tmp_path)[0]
    files = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, "the offline run lives inside the run folder"
    records = read_records(files[0])
    run = next(rec.run for rec in records if rec.WhichOneof("record_type") == "run")
    assert run.display_name == run_dir.name and run.run_group == "suite-x"
    assert set(run.tags) >= {"selector:random", "dataset:digits", "budget:30", "seed:4"}
    config = {_key(i): json.loads(i.value_json) for i in run.config.update}
    assert config["selector"] == "random" and config["batch_budget"] == 6
    history = [{_key(i): json.loads(i.value_json) for i in rec.history.item}
               for rec in records if rec.WhichOneof("record_type") == "history"]
    evals = [h for h in history if "test/top1" in h]
    summary = summary_of(tmp_path)
    assert [h["train/step"] for h in evals] == [p["step"] for p in summary["curve"]]
    assert [h["test/top1"] for h in evals] == pytest.approx([p["top1"] for p in summary["curve"]])
    final = {}
    for rec in records:
        if rec.WhichOneof("record_type") == "summary":
            final.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
    assert final["test_top1"] == pytest.approx(summary["test_top1"])
    assert final["selection_forward_batches"] == summary["selection_forward_batches"]
    assert final["uses"] == ", ".join(summary["uses"]), "the leaderboard reads `uses` back from W&B"
    vals = [h for h in history if "val/top1" in h]  # the validation split under val/, as the board reads it
    assert [h["val/top1"] for h in vals] == pytest.approx([p["val_top1"] for p in summary["curve"]])
    assert final["best"]["step"] == summary["best"]["step"]
    assert final["compute"]["train_images"] == summary["compute"]["train_images"]


def test_wandb_ids_differ_between_results_folders_and_hold_on_resume(tmp_path):
    from vecaf_bench_plugins.trackers.wandb_tracker import wandb_run_id

    a = wandb_run_id("smoke-digits-30-s0", tmp_path / "a" / "smoke-digits-30-s0")
    b = wandb_run_id("smoke-digits-30-s0", tmp_path / "b" / "smoke-digits-30-s0")
    assert a != b and a.startswith("smoke-digits-30-s0-")
    assert a == wandb_run_id("smoke-digits-30-s0", tmp_path / "a" / "x" / ".." / "smoke-digits-30-s0")


def test_disabled_mode_runs_and_writes_no_wandb_files(cli, tmp_path):
    r = cli("run", *TINY, "--batch-budget", "2", "--wandb-mode", "disabled", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    run_dir = run_dirs(tmp_path)[0]
    assert not (run_dir / "wandb").exists()
    assert summary_of(tmp_path)["status"] == "finished"


def test_bad_wandb_mode(cli, tmp_path):
    r = cli("run", "--wandb-mode", "ofline", "--out", tmp_path)
    assert r.exit_code == 2 and "Did you mean 'offline'?" in r.output
