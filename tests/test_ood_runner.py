"""OOD splits from shift plugins: evaluated beside the test split, masked, summarised, and
handed to text-using selectors as target-domain prompts."""

import numpy as np
from conftest import TINY, summary_of

from vecaf_bench.data import ArrayImages
from vecaf_bench.shifts import align_classes, parse_shift


def test_ood_splits_are_evaluated_masked_and_summarised(cli, tmp_path):
    r = cli("run", *TINY, "--plugin", "toy_shift", "--shift", "toy", "--selector", "vecaf", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert set(s["ood"]) == {"inverted", "inverted-low", "inverted-low-masked"}
    steps = [p["step"] for p in s["curve"]]
    for v in s["ood"].values():
        assert [p["step"] for p in v["curve"]] == steps
        assert v["top1"] == v["curve"][-1]["top1"]
    # the group mean is the mean of its members; the ungrouped split stands alone
    toy = s["ood_groups"]["toy"]
    assert toy["splits"] == 2
    assert np.isclose(toy["top1"], (s["ood"]["inverted"]["top1"] + s["ood"]["inverted-low"]["top1"]) / 2)
    # every label of the low split is inside the mask: masking other classes can only help
    masked, plain = s["ood"]["inverted-low-masked"], s["ood"]["inverted-low"]
    assert masked["classes"] == 5 and plain["classes"] is None
    for m, p in zip(masked["curve"], plain["curve"], strict=True):
        assert m["top1"] >= p["top1"]
    assert "ood toy (mean of 2)" in r.output
    # text_domain auto: the text-using selector got the shift's target-domain prompts
    assert "domain 'negative'" in r.output


def test_text_domain_off_and_ood_only_at_the_end(cli, tmp_path):
    r = cli("run", *TINY, "--plugin", "toy_shift", "--shift", "toy", "--set", "text_domain=null",
            "--set", "ood_eval_every=0", "--selector", "vecaf", "--batch-budget", "4", "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert "domain '" not in r.output
    s = summary_of(tmp_path)
    assert [p["step"] for p in s["ood"]["inverted"]["curve"]] == [4]


def test_bad_shifts_are_named(cli, tmp_path):
    r = cli("run", *TINY, "--plugin", "toy_shift", "--shift", "toyy", "--out", tmp_path)
    assert r.exit_code == 2
    assert "unknown shift 'toyy'" in r.output and "Did you mean 'toy'" in r.output
    r = cli("run", *TINY, "--plugin", "toy_shift", "--shift", "toybroken", "--out", tmp_path)
    assert r.exit_code == 2
    assert "shift 'toybroken'" in r.output and "outside the run's 10 classes" in r.output
    r = cli("run", *TINY, "--shift", ":x", "--out", tmp_path)
    assert r.exit_code == 2 and "has no name" in r.output


def test_align_classes_maps_by_key_leaves_out_and_masks():
    pixels = np.zeros((6, 4, 4), dtype=np.uint8)
    src = ArrayImages(pixels, np.array([0, 1, 2, 0, 1, 2]), "src")
    # source classes a, b, z; the run's classes c, b, a: z is left out, a->2, b->1, mask marks a and b
    out, mask = align_classes(src, ["a", "b", "z"], ["c", "b", "a"], "t")
    assert out.labels.tolist() == [2, 1, 2, 1]
    assert out.indices.tolist() == [0, 1, 3, 4]
    assert mask.tolist() == [False, True, True]
    assert parse_shift("corruption:gaussian_noise:3") == ("corruption", "gaussian_noise:3")
