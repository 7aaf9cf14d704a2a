"""`vecaf-bench run --selection FILE`: finetuning on a selection made elsewhere (portable selections).

Picks made by `select` on an unlabelled folder are evaluated on the labelled copy of the same
images, with another backbone; a run's selected.json is replayed exactly; the board names the
row after the file; every mismatch is one paragraph with exit code 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import TINY, run_dirs, selected_of, summary_of
from PIL import Image
from sklearn.datasets import load_digits

FAST = ["--image-size", "32", "--batch-size", "16"]
TRAIN = ["--batch-budget", "4", "--eval-every", "2", "--batch-size", "16", "--image-size", "32"]


@pytest.fixture(scope="module")
def copies(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same 150 digit images twice: flat and unlabelled, and sorted into train/<class>/ with a
    val/<class>/ test split of 60 more."""
    d = load_digits()
    top = tmp_path_factory.mktemp("copies")
    unlabelled, labelled = top / "unlabelled", top / "labelled"
    for i in range(210):
        im = Image.fromarray((d.images[i] * 15).astype(np.uint8)).resize((24, 24)).convert("RGB")
        if i < 150:
            unlabelled.mkdir(exist_ok=True)
            im.save(unlabelled / f"img_{i:04d}.png")
        split = "train" if i < 150 else "val"
        (labelled / split / str(d.target[i])).mkdir(parents=True, exist_ok=True)
        im.save(labelled / split / str(d.target[i]) / f"img_{i:04d}.png")
    return unlabelled, labelled


def trained_on(selection: str, labelled: Path, run_dir: Path) -> tuple[Any, list[str]]:
    """The labelled dataset's splits as `run --selection` carves them, and the pool paths of the
    images the run in RUN_DIR trained on, in its order."""
    from vecaf_bench.config import build_config
    from vecaf_bench.datastore import forget_indexes
    from vecaf_bench.pluginmanager import PluginHost
    from vecaf_bench.run.given import relative_paths, resolve_selection
    from vecaf_bench.run.setup import load_dataset

    forget_indexes()
    cfg = build_config(None, {"dataset": str(labelled)}, [])
    splits, _ = resolve_selection(selection, load_dataset(PluginHost([]), cfg), 0.1)
    paths = relative_paths(splits.pool)
    (rounds,) = selected_of(run_dir)
    return splits, [paths[i] for i in rounds]


def test_picks_from_the_unlabelled_folder_train_on_the_labelled_copy_with_another_backbone(cli, copies, tmp_path):
    unlabelled, labelled = copies
    r = cli("select", "--dataset", unlabelled, "--budget", "20", "--selector", "kmeans", *FAST,
            "--out", tmp_path / "picks.csv")
    assert r.exit_code == 0, r.output
    with open(tmp_path / "picks.csv", newline="") as f:
        picked = [row["path"] for row in csv.DictReader(f)]
    run = cli("run", "--selection", tmp_path / "picks.csv", "--dataset", labelled, "--label-budget", "20",
              "--backbone", "timm:resnet18", "--weights", "none", *TRAIN, "--out", tmp_path / "runs")
    assert run.exit_code == 0, run.output
    s = summary_of(tmp_path / "runs")
    assert s["selector"] == "selection" and s["label"] == "picks.csv (kmeans, timm:tf_efficientnet_lite0@32px)"
    assert s["selection"]["size"] == 20 and s["selection"]["matched_by"] == "file name"
    assert s["selection"]["backbone"] == "timm:tf_efficientnet_lite0@32px" and s["backbone"] == "timm:resnet18"
    assert s["val"]["source"] == "carved from the pool outside the given selection" and s["val_size"] > 0
    # the run trained on exactly the picked images, in pick order
    from vecaf_bench.data import with_validation
    from vecaf_bench.run.given import relative_paths

    splits, trained = trained_on(str(tmp_path / "picks.csv"), labelled, run_dirs(tmp_path / "runs")[0])
    assert [p.split("/", 1)[1] for p in trained] == picked
    val_paths = set(relative_paths(splits.val))
    assert not val_paths & set(trained), "no pick is held out for validation"
    assert len(with_validation(splits, 0.1).pool) == len(splits.pool)
    board = cli("leaderboard", tmp_path / "runs", "--format", "markdown")
    assert board.exit_code == 0, board.output
    assert "picks.csv (kmeans, timm:tf_efficientnet_lite0@32px)" in board.output


def test_a_runs_selected_json_replays_the_same_picks(cli, tmp_path):
    first = cli("run", *TINY, "--selector", "kmeans", "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    source = run_dirs(tmp_path / "a")[0]
    again = cli("run", *TINY, "--selection", source / "selected.json", "--out", tmp_path / "b")
    assert again.exit_code == 0, again.output
    s = summary_of(tmp_path / "b")
    assert selected_of(run_dirs(tmp_path / "b")[0]) == selected_of(source)
    assert s["selection"]["matched_by"] == "index" and s["selection"]["selector"] == "kmeans"
    assert s["label"].startswith("selected.json (kmeans")


def test_selection_mismatches_are_one_paragraph_with_exit_2(cli, copies, tmp_path):
    unlabelled, labelled = copies
    (tmp_path / "foreign.csv").write_text("rank,path\n1,img_0001.png\n2,cat.png\n3,img_0170.png\n")
    (tmp_path / "big.json").write_text(json.dumps([f"img_{i:04d}.png" for i in range(40)]))
    (tmp_path / "far.json").write_text(json.dumps([3, 5, 100000]))
    (tmp_path / "sel").mkdir()
    (tmp_path / "sel" / "selected.json").write_text(json.dumps({"pool_size": 5, "mode": "grow", "rounds": [[0, 1]]}))
    cases = [
        (["--dataset", labelled, "--selection", tmp_path / "foreign.csv", "--label-budget", "20"],
         "2 of its 3 images are not in the dataset's pool (cat.png, img_0170.png); 1 are in its test split"),
        (["--dataset", labelled, "--selection", tmp_path / "big.json", "--label-budget", "20"],
         "holds 40 images, more than the label budget of 20"),
        (["--selection", tmp_path / "far.json"], "1 of its 3 indices are outside this run's pool"),
        (["--selection", tmp_path / "sel" / "selected.json"], "holds indices into a pool of 5 images"),
        (["--selection", tmp_path / "far.json", "--selector", "kmeans"], "replaces the selector"),
        (["--selection", tmp_path / "far.json", "--rounds", "2"], "runs with --rounds 1"),
        (["--selection", tmp_path / "missing.csv"], "does not exist"),
        (["--selection", f"{tmp_path / 'far.json'},{tmp_path / 'foreign.csv'}"],
         "mixes files of image paths with files of pool indices"),
        (["--dataset", labelled, "--selection", f"{tmp_path / 'foreign.csv'},{tmp_path / 'foreign.csv'}",
          "--label-budget", "20"], "not in the dataset's pool"),
    ]
    for args, words in cases:
        where = [] if "--dataset" in args else ["--dataset", "digits"]
        r = cli("run", *TRAIN, *args, *where, "--out", tmp_path / "runs")
        assert r.exit_code == 2, (args, r.output)
        assert words in " ".join(r.output.split()), (args, r.output)
        assert "Traceback" not in r.output
    assert not (tmp_path / "runs").exists() or not run_dirs(tmp_path / "runs"), "a refused run leaves no folder"


def test_the_rounds_of_a_campaign_train_together_as_one_selection(cli, copies, tmp_path):
    """Round 2's file holds only its new picks; `--selection round1.csv,round2.csv` trains on both,
    in order, and the same image in two rounds is refused."""
    unlabelled, labelled = copies
    one = cli("select", "--dataset", unlabelled, "--budget", "8", "--selector", "kmeans", *FAST,
              "--out", tmp_path / "r1.csv")
    two = cli("select", "--dataset", unlabelled, "--budget", "6", "--selector", "kmeans", *FAST,
              "--selected", tmp_path / "r1.csv", "--out", tmp_path / "r2.jsonl")
    assert one.exit_code == 0 and two.exit_code == 0, one.output + two.output
    both = f"{tmp_path / 'r1.csv'},{tmp_path / 'r2.jsonl'}"
    run = cli("run", "--selection", both, "--dataset", labelled, "--label-budget", "14", *TRAIN,
              "--out", tmp_path / "runs")
    assert run.exit_code == 0, run.output
    s = summary_of(tmp_path / "runs")
    assert s["selection"]["size"] == 14 and s["label"].startswith("r1.csv+r2.jsonl (kmeans")
    from vecaf_bench.picks import read_picks

    picked = read_picks(tmp_path / "r1.csv").paths + read_picks(tmp_path / "r2.jsonl").paths
    names = [p.rsplit("/", 1)[-1] for p in picked]
    _, trained = trained_on(both, labelled, run_dirs(tmp_path / "runs")[0])
    assert [p.rsplit("/", 1)[-1] for p in trained] == names, "round 1's picks, then round 2's"
    twice = cli("run", "--selection", f"{tmp_path / 'r1.csv'},{tmp_path / 'r1.csv'}", "--dataset", labelled,
                "--label-budget", "16", *TRAIN, "--out", tmp_path / "twice")
    assert twice.exit_code == 2 and "more than once" in twice.output, twice.output


def test_a_suite_sweeps_backbones_over_fixed_selections_and_a_rerun_recomputes_nothing(cli, copies, tmp_path):
    unlabelled, labelled = copies
    r = cli("select", "--dataset", unlabelled, "--budget", "20", "--selector", "kmeans", *FAST,
            "--out", tmp_path / "picks.csv")
    assert r.exit_code == 0, r.output
    suite = {
        "name": "portable",
        "base": {"batch_size": 16, "eval_every": 2, "image_size": 32},
        "selectors": ["random",
                      {"name": "selection", "label": "kmeans-picks", "selection": str(tmp_path / "picks.csv")}],
        "backbones": ["timm:tf_efficientnet_lite0", {"name": "timm:resnet18", "weights": "none", "label": "r18"}],
        "datasets": [str(labelled)],
        "label_budgets": [20],
        "batch_budgets": [4],
        "seeds": [0],
    }
    (tmp_path / "s.yaml").write_text(json.dumps(suite))
    out = tmp_path / "out"
    run = cli("suite", tmp_path / "s.yaml", "--out", out)
    assert run.exit_code == 0, run.output
    ids = sorted(p.name for p in (out / "portable").iterdir() if p.is_dir() and not p.name.startswith("."))
    assert ids == sorted(f"portable-labelled-20-b4-{sel}-{bb}-s0" for sel in ("random", "kmeans-picks")
                         for bb in ("tf_efficientnet_lite0", "r18"))
    with open(tmp_path / "picks.csv", newline="") as f:
        picked = [row["path"] for row in csv.DictReader(f)]
    for bb, spec in (("tf_efficientnet_lite0", "timm:tf_efficientnet_lite0"), ("r18", "timm:resnet18")):
        run = out / "portable" / f"portable-labelled-20-b4-kmeans-picks-{bb}-s0"
        s = json.loads((run / "summary.json").read_text())
        assert s["backbone"] == spec and s["label"] == "kmeans-picks" and s["selection"]["size"] == 20
        assert s["selection"]["selector"] == "kmeans"
    # the same 20 images under both backbones
    picks_of = [selected_of(out / "portable" / f"portable-labelled-20-b4-kmeans-picks-{bb}-s0")
                for bb in ("tf_efficientnet_lite0", "r18")]
    assert picks_of[0] == picks_of[1] and len(picks_of[0][0]) == len(picked)
    again = cli("suite", tmp_path / "s.yaml", "--out", out)
    assert again.exit_code == 0, again.output
    assert "4 finished earlier (skipped), 0 to resume, 0 to start" in " ".join(again.output.split())
    board = cli("leaderboard", out / "portable", "--format", "csv")
    assert board.exit_code == 0, board.output
    rows = list(csv.DictReader(board.output.splitlines()))
    names = sorted(row["method"] for row in rows)
    assert len(names) == 4 and sum("kmeans-picks" in n for n in names) == 2
    assert any("resnet18" in n for n in names), names  # the backbone tells the rows apart


def test_a_suite_names_a_fixed_selection_entry_it_cannot_read(tmp_path):
    from suite_kit import whole_pool

    from vecaf_bench.errors import UserError
    from vecaf_bench.suite import grid as st

    base = {"name": "x", "datasets": ["digits"], "label_budgets": [10], "seeds": [0]}
    with pytest.raises(UserError, match="an entry named 'selection' with the picks file under 'selection:'"):
        st.expand_suite({**base, "selectors": [{"name": "kmeans", "selection": "p.csv"}]}, "s.yaml",
                        whole_pool=whole_pool)
    with pytest.raises(UserError, match="'backbones' axis sets it for every run"):
        st.expand_suite({**base, "selectors": ["random"], "base": {"backbone": "timm:resnet18"},
                         "backbones": ["timm:resnet18"]}, "s.yaml", whole_pool=whole_pool)
    with pytest.raises(UserError, match="twice under 'backbones'"):
        st.expand_suite({**base, "selectors": ["random"], "backbones": ["timm:resnet18", "resnet18"]}, "s.yaml",
                        whole_pool=whole_pool)
