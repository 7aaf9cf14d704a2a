"""Picks files (vecaf_bench.picks): what `select` writes for a labelling campaign comes back
whole as --selected / --selection, in every format, and bad files are clear errors."""

import csv
import json

import pytest

from vecaf_bench.errors import UserError
from vecaf_bench.picks import Picks, format_for, match_paths, read_picks, write_picks

PICKS = Picks(paths=["b/cat 1.png", "a/dog,2.jpg", "c.png"], scores=[0.9, None, 0.1], selector="activeft",
              backbone="timm:tf_efficientnet_lite0", seed=3)


@pytest.mark.parametrize("name", ["picks.csv", "picks.jsonl", "picks.json"])
def test_round_trip_keeps_order_scores_and_origin(tmp_path, name):
    path = write_picks(tmp_path / name, PICKS, url_prefix="http://host/" if name.endswith(".json") else None)
    back = read_picks(path, url_prefix="http://host/")
    assert back.paths == PICKS.paths and back.scores == PICKS.scores
    assert (back.selector, back.backbone, back.seed) == ("activeft", "timm:tf_efficientnet_lite0", 3)


def test_csv_opens_as_a_table_and_label_studio_tasks_point_at_the_images(tmp_path):
    rows = list(csv.DictReader((write_picks(tmp_path / "p.csv", PICKS)).open()))
    assert [r["rank"] for r in rows] == ["1", "2", "3"] and rows[1]["path"] == "a/dog,2.jpg" and rows[1]["score"] == ""
    tasks = json.loads(write_picks(tmp_path / "p.json", PICKS, url_prefix="https://s3/bucket/").read_text())
    assert tasks[0]["data"]["image"] == "https://s3/bucket/b/cat 1.png" and tasks[0]["meta"]["rank"] == 1
    tasks = json.loads(write_picks(tmp_path / "q.txt", PICKS, fmt="label-studio").read_text())
    assert tasks[2]["data"]["image"] == "c.png"


def test_runs_selected_json_and_plain_lists_read_as_indices_or_paths(tmp_path):
    (tmp_path / "selected.json").write_text(json.dumps({"pool_size": 90, "mode": "grow", "rounds": [[4, 1], [7]]}))
    (tmp_path / "config.yaml").write_text("selector: vecaf\nbackbone: timm:resnet18\nseed: 3\ndataset: mnist\n")
    s = read_picks(tmp_path / "selected.json")
    assert s.indices == [4, 1, 7] and s.selector == "vecaf" and len(s) == 3
    assert (s.backbone, s.seed, s.dataset, s.pool_size) == ("timm:resnet18", 3, "mnist", 90)
    (tmp_path / "selected.json").write_text(json.dumps({"pool_size": 90, "mode": "reselect", "rounds": [[4], [7, 2]]}))
    assert read_picks(tmp_path / "selected.json").indices == [7, 2], "reselect: the last round is the selection"
    (tmp_path / "ints.json").write_text("[3, 2]")
    assert read_picks(tmp_path / "ints.json").indices == [3, 2]
    (tmp_path / "paths.json").write_text('["x.png", "y.png"]')
    assert read_picks(tmp_path / "paths.json").paths == ["x.png", "y.png"]


def test_bad_picks_files_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="folder .* does not exist"):
        write_picks(tmp_path / "nope" / "p.csv", PICKS)
    with pytest.raises(UserError, match="extension '.txt'"):
        format_for(tmp_path / "p.txt")
    with pytest.raises(UserError, match="unknown for picks.*label-studio"):
        format_for("p.csv", "labelstudio")
    (tmp_path / "bad.csv").write_text("file,score\nx.png,1\n")
    with pytest.raises(UserError, match="no 'path' column"):
        read_picks(tmp_path / "bad.csv")
    (tmp_path / "bad.json").write_text('{"a": 1}')
    with pytest.raises(UserError, match="neither a Label Studio task list"):
        read_picks(tmp_path / "bad.json")
    with pytest.raises(UserError, match="does not exist"):
        read_picks(tmp_path / "missing.csv")
    with pytest.raises(UserError, match=r"2 of its 3 images are not in the folder \(q.png, r.png\)"):
        match_paths(["p.png", "q.png", "r.png"], ["p.png", "s.png"], "--selected earlier.csv")
    assert match_paths(["s.png", "p.png"], ["p.png", "s.png"], "x") == [1, 0]


def test_written_files_get_the_mode_a_plain_write_gives_so_they_can_be_shared(tmp_path):
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    path = write_picks(tmp_path / "p.csv", PICKS)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's private 0600
    path.chmod(0o640)
    write_picks(path, PICKS)
    assert path.stat().st_mode & 0o777 == 0o640  # a replaced file keeps its mode
