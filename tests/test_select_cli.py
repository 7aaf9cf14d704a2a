"""`vecaf-bench select`: selection alone on precomputed features."""

import json

import numpy as np
import pytest


@pytest.fixture
def feature_file(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 12)).astype(np.float32)
    path = tmp_path / "F.npy"
    np.save(path, x)
    return path


@pytest.mark.parametrize("selector,extra", [("coreset", []), ("random", []),
                                            ("activeft", ["--set", "iterations=20"])])
def test_select_writes_unique_indices(cli, tmp_path, feature_file, selector, extra):
    out = tmp_path / "sub" / "idx.json"
    r = cli("select", "--features", feature_file, "--budget", "5%", "--selector", selector, "--seed", "2",
            "--out", out, *extra)
    assert r.exit_code == 0, r.output
    idx = json.loads(out.read_text())
    assert len(idx) == 15 == len(set(idx)) and all(isinstance(i, int) and 0 <= i < 300 for i in idx)
    again = tmp_path / "again.json"
    cli("select", "--features", feature_file, "--budget", "15", "--selector", selector, "--seed", "2",
        "--out", again, *extra)
    assert json.loads(again.read_text()) == idx  # a count and the same fraction: the same picks


def test_select_keeps_earlier_picks_out(cli, tmp_path, feature_file):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps(list(range(0, 300, 3))))
    out = tmp_path / "idx.json"
    r = cli("select", "--features", feature_file, "--budget", "40", "--selector", "coreset", "--selected", earlier,
            "--out", out)
    assert r.exit_code == 0, r.output
    assert not set(json.loads(out.read_text())) & set(range(0, 300, 3))


def test_select_bad_inputs(cli, tmp_path, feature_file):
    r = cli("select", "--features", tmp_path / "missing.npy", "--budget", "5", "--out", tmp_path / "i.json")
    assert r.exit_code == 2 and "features file" in r.output and "does not exist" in r.output
    r = cli("select", "--features", feature_file, "--budget", "0", "--out", tmp_path / "i.json")
    assert r.exit_code == 2 and "label budget '0' must be positive" in r.output
    r = cli("select", "--features", feature_file, "--budget", "5", "--selector", "activeft", "--set", "tau=-1",
            "--out", tmp_path / "i.json")
    assert r.exit_code == 2 and "tau > 0" in r.output
    assert "Traceback" not in r.output
