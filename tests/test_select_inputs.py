"""`vecaf-bench select` checks its files before selecting: non-finite feature rows, labels that are
no class indices, files that are no .npy array, earlier picks outside the features."""

import json

import numpy as np
import pytest


def assert_user_error(result, *fragments: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    for frag in fragments:
        assert frag in text, f"{frag!r} not in {text!r}"


@pytest.fixture
def features(tmp_path):
    path = tmp_path / "F.npy"
    np.save(path, np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32))
    return path


def select(cli, tmp_path, *args: str):
    return cli("select", "--budget", "5", "--out", tmp_path / "idx.json", *args)


@pytest.mark.parametrize("selector,extra", [("random", []), ("coreset", []), ("activeft", ["--set", "iterations=5"])])
def test_nan_and_inf_rows_are_named_before_any_selector_runs(cli, tmp_path, selector, extra):
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    bad = [2, 5, 11, 17, 23, 31]
    x[bad[:4], 0] = np.nan
    x[bad[4:], 3] = np.inf
    path = tmp_path / "nan.npy"
    np.save(path, x)
    r = select(cli, tmp_path, "--features", path, "--selector", selector, *extra)
    assert_user_error(r, f"features file '{path}' has NaN or infinite values in 6 row(s) (2, 5, 11, 17, 23, …) of 40",
                      "np.isfinite(F).all(axis=1)", "F.compress(keep, axis=0)")
    assert not (tmp_path / "idx.json").exists()


@pytest.mark.parametrize("suffix,delimiter", [(".txt", None), (".csv", "','")])
def test_text_features_file_says_a_npy_array_is_expected(cli, tmp_path, suffix, delimiter):
    path = tmp_path / f"F{suffix}"
    np.savetxt(path, np.ones((4, 3)), delimiter="," if suffix == ".csv" else " ")
    r = select(cli, tmp_path, "--features", path)
    assert_user_error(r, f"features file '{path}' is not a .npy file",
                      "--features expects an (N, d) array of numbers saved with numpy.save",
                      f"np.save('F.npy', np.loadtxt('{path}', delimiter={delimiter}))")
    assert "allow_pickle" not in r.output


def test_npz_and_pickled_features_are_explained(cli, tmp_path):
    npz = tmp_path / "F.npz"
    np.savez(npz, feats=np.ones((4, 3)))
    assert_user_error(select(cli, tmp_path, "--features", npz), f"features file '{npz}' is a .npz archive",
                      f"np.load('{npz}')")
    objects = tmp_path / "obj.npy"
    np.save(objects, np.array([{"a": 1}] * 4, dtype=object), allow_pickle=True)
    r = select(cli, tmp_path, "--features", objects)
    assert_user_error(r, f"features file '{objects}' is not a usable .npy array (it holds Python objects",
                      "numpy.save")
    assert "allow_pickle" not in r.output


def test_labels_must_be_integer_class_indices(cli, tmp_path, features):
    frac = tmp_path / "frac.npy"
    labels = np.arange(40) % 3 + 0.0
    labels[[4, 9]] = [0.5, np.nan]
    np.save(frac, labels)
    assert_user_error(select(cli, tmp_path, "--features", features, "--labels", frac),
                      f"labels file '{frac}' has values that are not integers in 2 row(s) (4, 9)", "0..C-1",
                      "labels.astype(int)")
    names = tmp_path / "names.npy"
    np.save(names, np.array(["cat", "dog"] * 20))
    assert_user_error(select(cli, tmp_path, "--features", features, "--labels", names),
                      f"labels file '{names}' holds <U3 values, not integer class indices",
                      "np.unique(values, return_inverse=True)")
    negative = tmp_path / "neg.npy"
    np.save(negative, np.r_[np.full(39, 1), -1])
    assert_user_error(select(cli, tmp_path, "--features", features, "--labels", negative),
                      f"labels file '{negative}' has negative values in 1 row(s) (39)")
    text = tmp_path / "L.csv"
    text.write_text("0\n1\n")
    assert_user_error(select(cli, tmp_path, "--features", features, "--labels", text),
                      f"labels file '{text}' is not a .npy file", "(N,) array of integer class indices")


def test_whole_valued_float_labels_are_taken(cli, tmp_path, features):
    labels = tmp_path / "L.npy"
    np.save(labels, (np.arange(40) % 4).astype(np.float64))
    r = select(cli, tmp_path, "--features", features, "--labels", labels)
    assert r.exit_code == 0, r.output
    assert len(json.loads((tmp_path / "idx.json").read_text())) == 5


def test_earlier_picks_outside_the_features_are_refused(cli, tmp_path, features):
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps([1, 40, 3]))
    assert_user_error(select(cli, tmp_path, "--features", features, "--selected", earlier),
                      f"--selected '{earlier}' has indices outside the 40 feature rows (0..39)", "e.g. 40",
                      "another features file")
    earlier.write_text(json.dumps([1, 1]))
    assert_user_error(select(cli, tmp_path, "--features", features, "--selected", earlier), "more than once")
    earlier.write_text(json.dumps({"picked": [1]}))
    assert_user_error(select(cli, tmp_path, "--features", features, "--selected", earlier),
                      "is not a JSON list of integer indices")
