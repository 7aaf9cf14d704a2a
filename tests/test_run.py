"""End-to-end runs on real data (sklearn digits) with the real pretrained backbone."""

import json

import numpy as np
from conftest import TINY, run_dirs, selected_of, summary_of
from PIL import Image


def test_run_writes_results_and_is_deterministic(cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    r1 = cli("run", *TINY, "--selector", "coreset", "--seed", "3", "--out", a)
    assert r1.exit_code == 0, r1.output
    r2 = cli("run", *TINY, "--selector", "coreset", "--seed", "3", "--out", b)
    assert r2.exit_code == 0, r2.output
    s1, s2 = summary_of(a), summary_of(b)
    for key in ("selector", "dataset", "backbone", "seed", "label_budget", "batch_budget", "steps", "test_top1",
                "curve", "selection_seconds", "selection_forward_batches", "versions"):
        assert key in s1
    assert s1["status"] == "finished" and s1["steps"] == 6 and s1["label_budget"] == 30
    assert [p["step"] for p in s1["curve"]] == [3, 6]
    assert s1["curve"][-1]["top1"] == s1["test_top1"]
    assert "git_commit" in s1 and s1["versions"]["torch"]
    import torch

    assert s1["torch_threads"] == torch.get_num_threads()  # CPU numbers depend on it: recorded
    # same config and seed: same selection, same metrics
    d1, d2 = run_dirs(a)[0], run_dirs(b)[0]
    assert selected_of(d1) == selected_of(d2)
    assert s1["curve"] == s2["curve"]
    # the resolved config is saved and the events were logged
    assert "selector: coreset" in (d1 / "config.yaml").read_text()
    events = [json.loads(line)["event"] for line in (d1 / "events.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and events.count("eval") == 2
    # the printed summary shows the result
    assert "test top-1" in r1.output and f"{s1['test_top1']:.2f}%" in r1.output


def test_other_seed_selects_differently(cli, tmp_path):
    cli("run", *TINY, "--seed", "1", "--out", tmp_path / "a")
    cli("run", *TINY, "--seed", "2", "--out", tmp_path / "b")
    assert selected_of(run_dirs(tmp_path / "a")[0]) != selected_of(run_dirs(tmp_path / "b")[0])


def test_feature_cache_is_reused(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("VECAF_BENCH_CACHE", str(tmp_path / "cache"))
    first = cli("run", *TINY, "--batch-budget", "2", "--out", tmp_path / "a")
    assert "features: extracted" in first.output
    second = cli("run", *TINY, "--batch-budget", "2", "--out", tmp_path / "b")
    assert "features: reused cache" in second.output
    s1, s2 = summary_of(tmp_path / "a"), summary_of(tmp_path / "b")
    assert s1["features"]["cached"] is False and s2["features"]["cached"] is True
    assert s1["features"]["cache"] == s2["features"]["cache"]
    feats = np.load(s2["features"]["cache"], mmap_mode="r")
    assert isinstance(feats, np.memmap) and feats.shape == (1295, 1280)  # 1438 less the validation split
    # another image size is another transform: not the same cache entry
    third = cli("run", *TINY, "--batch-budget", "2", "--image-size", "40", "--out", tmp_path / "c")
    assert "features: extracted" in third.output


def test_rounds_split_both_budgets_exactly(cli, tmp_path):
    r = cli("run", *TINY, "--rounds", "3", "--label-budget", "31", "--batch-budget", "7", "--eval-every", "0",
            "--selector", "coreset", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert [x["picked"] for x in s["rounds"]] == [11, 10, 10]
    assert [x["steps"] for x in s["rounds"]] == [3, 2, 2] and s["steps"] == 7
    rounds = selected_of(run_dirs(tmp_path)[0])
    flat = [i for r in rounds for i in r]
    assert len(flat) == len(set(flat)) == 31


def test_full_selector_takes_whole_pool(cli, tmp_path):
    r = cli("run", *TINY, "--selector", "full", "--batch-budget", "2", "--eval-every", "0", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["label_budget"] == s["pool_size"] == 1295


def test_folder_dataset_skips_corrupt_image_and_reports_it(cli, tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for c, colour in (("n01440764", (200, 30, 30)), ("n01443537", (30, 30, 200))):
        (root / c).mkdir(parents=True)
        for i in range(8):
            img = np.clip(rng.normal(colour, 25, (24, 24, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / c / f"{i}.png")
    bad = root / "n01440764" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    r = cli("run", "--dataset", root, "--label-budget", "4", "--batch-budget", "2", "--eval-every", "0",
            "--image-size", "32", "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert str(bad) in r.output  # reported with its path
    s = summary_of(tmp_path / "o")
    assert s["pool_size"] + s["val_size"] + s["test_size"] == 16
    assert any(str(bad) in x for x in s["dataset_info"]["skipped"])
    assert len(s["dataset_info"]["split"]["test_files"]) == s["test_size"]


def test_vecaf_runs_in_rounds_and_counts_its_forward_passes(cli, tmp_path):
    for rounds in (1, 3):
        out = tmp_path / f"r{rounds}"
        r = cli("run", *TINY, "--selector", "vecaf", "--rounds", str(rounds), "--set",
                "selector_options.iterations=30", "--out", out)
        assert r.exit_code == 0, r.output
        s = summary_of(out)
        assert s["uses"] == ["labels", "model", "text"]
        assert sum(x["picked"] for x in s["rounds"]) == 30 and s["steps"] == 6
        assert sum(x["steps"] for x in s["rounds"]) == 6 and len(s["rounds"]) == rounds
        assert s["rounds"][0]["selection_forward_batches"] == 0  # round 0: untrained head, uniform weights
        assert s["rounds"][0]["stats"]["weights"].startswith("uniform")
        if rounds == 3:
            later = s["rounds"][1:]
            assert all(x["selection_forward_batches"] > 0 and x["stats"]["weights"] == "loss" for x in later)
            assert s["selection_forward_batches"] == sum(x["selection_forward_batches"] for x in s["rounds"])


def test_vecaf_reselect_mode_replaces_the_set_each_round(cli, tmp_path):
    r = cli("run", *TINY, "--selector", "vecaf", "--rounds", "2", "--set", "selector_options.iterations=10",
            "--set", "selector_options.reselect=true", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert [x["picked"] for x in s["rounds"]] == [15, 30] and s["label_budget"] == 30
    sel = json.loads((run_dirs(tmp_path)[0] / "selected.json").read_text())
    assert sel["mode"] == "reselect" and len(set(sel["rounds"][1])) == 30


def test_channels_last_is_the_default_and_keeps_its_own_feature_cache(cli, tmp_path):
    """NHWC (the default) and NCHW compute slightly different floats: a run in one layout never
    reads features the other wrote, and the layout is part of the run's identity."""
    r = cli("run", *TINY, "--selector", "coreset", "--out", tmp_path / "nhwc")
    assert r.exit_code == 0, r.output
    r = cli("run", *TINY, "--selector", "coreset", "--set", "train.channels_last=false", "--out", tmp_path / "nchw")
    assert r.exit_code == 0, r.output
    nhwc, nchw = summary_of(tmp_path / "nhwc"), summary_of(tmp_path / "nchw")
    assert nhwc["identity"]["train.channels_last"] is True and nchw["identity"]["train.channels_last"] is False
    assert nhwc["features"]["cache"] != nchw["features"]["cache"]
    assert nhwc["identity_hash"] != nchw["identity_hash"]
