"""The built-in shift generators: ImageNet-C corruptions of the test split (severity, seeding,
the spec, the on-disk cache) and domain shifts to another dataset (class mapping, mask)."""

from __future__ import annotations

import pickle
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import summary_of
from PIL import Image

from vecaf_bench.config import RunConfig
from vecaf_bench.data import DatasetRequest
from vecaf_bench.errors import UserError
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench.runner import load_dataset
from vecaf_bench.shifts import ShiftRequest
from vecaf_bench.text import domain_templates
from vecaf_bench_plugins.datasets.embedded import load_digits
from vecaf_bench_plugins.shifts import corruption as corr
from vecaf_bench_plugins.shifts.domain import domain_shift

warnings.filterwarnings("ignore", category=RuntimeWarning)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage.data import chelsea

    return corr.prepare(Image.fromarray(chelsea()), 64)


def distortion(photo: np.ndarray, name: str, draws: int = 8) -> list[float]:
    """Mean absolute difference to the clean photo per severity, over `draws` random draws."""
    clean = photo.astype(np.float64)
    return [
        float(np.mean([np.abs(corr.corrupt_image(photo, name, s, 0, i) - clean).mean() for i in range(draws)]))
        for s in corr.SEVERITIES
    ]


def rising(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:], strict=False))


# corrupt_tta's severities that do not all rise in pixel distortion, and why (each asserted below)
NOT_MONOTONE = {
    "motion_blur",  # severities 2-4 share kernel radius 15 and the cv2 port ignores sigma: the same blur
    "fog",  # severities 3 and 4 share fog strength 2.5; only the fractal's roughness differs
    "snow",  # severities 2 and 3 cover about the same area (3 has more, larger flakes, thresholded higher)
    "frost",  # one of 6 frost photos and a random crop per image: the texture drawn dominates the difference
    "elastic_transform",  # ImageNet-C's 1-2 are large smooth warps, 3-5 small local ones: two families
    "saturate",  # extra: 1-2 desaturate, 3-5 oversaturate
}


@pytest.mark.parametrize("name", [n for n in corr.STANDARD + corr.EXTRA if n not in NOT_MONOTONE])
def test_distortion_rises_with_severity(photo, name):
    d = distortion(photo, name)
    assert rising(d), (name, d)


def test_the_corruptions_that_are_not_monotone_rise_where_they_should(photo):
    blur = distortion(photo, "motion_blur")
    assert blur[0] < min(blur[1:4]) and max(blur[1:4]) < blur[4]
    assert max(blur[1:4]) - min(blur[1:4]) < 0.1 * blur[4]  # one blur at three severities
    fog = distortion(photo, "fog")
    assert rising(fog[:3]) and fog[3] < fog[4] and fog[0] < fog[4]
    assert abs(fog[2] - fog[3]) < 0.05 * fog[4]
    snow = distortion(photo, "snow")
    assert snow[0] < snow[1] and rising(snow[2:]) and abs(snow[1] - snow[2]) < 0.05 * snow[4]
    frost = distortion(photo, "frost", draws=24)
    assert frost[0] < min(frost[1:])  # in expectation; single draws vary with the texture
    elastic = distortion(photo, "elastic_transform")
    assert elastic[0] < elastic[1] and rising(elastic[2:])
    sat = distortion(photo, "saturate")
    assert sat[0] < sat[1] and rising(sat[2:])


@pytest.mark.parametrize("size", [4, 32, 224])
def test_every_corruption_works_from_4_px_to_224(size):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
    for name in corr.STANDARD + corr.EXTRA:
        for s in (1, 5) if size < 224 else (5,):
            y = corr.corrupt_image(x, name, s)
            assert y.shape == x.shape and y.dtype == np.uint8, name
            assert not np.array_equal(x, y), (name, s)
    with pytest.raises(UserError, match="at least 4 px"):
        corr.corrupt_image(x[:3, :3], "pixelate", 5)


RANDOM = ("gaussian_noise", "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "snow", "frost",
          "elastic_transform", "spatter")  # fmt: skip


def test_seeded_per_seed_and_image(photo):
    for name in RANDOM:
        a = corr.corrupt_image(photo, name, 3, seed=7, index=2)
        assert np.array_equal(a, corr.corrupt_image(photo, name, 3, seed=7, index=2)), name
        assert not np.array_equal(a, corr.corrupt_image(photo, name, 3, seed=8, index=2)), name
        assert not np.array_equal(a, corr.corrupt_image(photo, name, 3, seed=7, index=3)), name
    # a deterministic corruption does not depend on the seed
    assert np.array_equal(corr.corrupt_image(photo, "contrast", 3, 1), corr.corrupt_image(photo, "contrast", 3, 2))


def test_the_global_random_state_is_left_alone(photo):
    np.random.seed(123)
    random.seed(5)
    expected = np.random.random(4), random.random()
    np.random.seed(123)
    random.seed(5)
    for name in corr.STANDARD + corr.EXTRA:
        corr.corrupt_image(photo[:16, :16], name, 2, seed=1, index=0)
    assert np.array_equal(np.random.random(4), expected[0]) and random.random() == expected[1]
    from corrupt_tta import corruptions
    from skimage.util import random_noise

    assert corruptions.random_noise is random_noise  # the seeded stand-in is put back


def test_spec_grammar():
    assert len(corr.parse_spec("")) == 75 and corr.parse_spec("")[:2] == [("gaussian_noise", 1), ("gaussian_noise", 2)]
    assert corr.parse_spec("gaussian_noise") == [("gaussian_noise", s) for s in range(1, 6)]
    assert corr.parse_spec("gaussian_noise:3") == [("gaussian_noise", 3)]
    assert corr.parse_spec("all:3") == corr.parse_spec("*:3") == [(n, 3) for n in corr.STANDARD]
    assert corr.parse_spec("extra:2") == [(n, 2) for n in corr.EXTRA] and len(corr.parse_spec("extra")) == 20
    assert corr.parse_spec("fog, snow:1,5") == [("fog", 1), ("fog", 5), ("snow", 1), ("snow", 5)]
    assert corr.parse_spec("fog,fog:3,3") == [("fog", 3)]
    with pytest.raises(UserError, match="unknown corruption 'gausian_noise'.*Did you mean 'gaussian_noise'") as e:
        corr.parse_spec("gausian_noise:3")
    assert "1-5" in str(e.value) and "jpeg_compression" in str(e.value)
    for bad in ("fog:6", "fog:0", "fog:x", "fog:1,9"):
        with pytest.raises(UserError, match=r"corruption severity '.+' .* is not one of 1, 2, 3, 4, 5"):
            corr.parse_spec(bad)
    with pytest.raises(UserError, match="3 parts"):
        corr.parse_spec("fog:3:1")


@pytest.fixture(scope="module")
def digits():
    return load_digits(DatasetRequest("digits"))


def test_corrupted_splits_are_cached_and_reused(digits, tmp_path, monkeypatch):
    calls = []
    real = corr.corrupt_image
    monkeypatch.setattr(corr, "corrupt_image", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    request = ShiftRequest(spec="gaussian_noise,contrast:3", splits=digits, seed=1, image_size=16,
                           cache_dir=str(tmp_path))  # fmt: skip
    first = corr.corruption_shift(request)
    n = len(digits.test)
    assert len(calls) == 2 * n
    assert [o.name for o in first] == ["corruption:gaussian_noise:3", "corruption:contrast:3"]
    for o in first:
        assert o.group == "corruption" and o.mask is None and o.templates and o.domains
        assert np.array_equal(o.images.labels, digits.test.labels) and len(o.images) == n
        im = o.images.image(5)
        assert im.mode == "RGB" and im.size == (16, 16)
        assert isinstance(o.images.pixels, np.memmap)
    assert first[0].domains == ["noise"] and "a noisy photo of a {}." in first[0].templates
    # what is stored is the prepared image corrupted with its own index's seed
    clean = corr.prepare(digits.test.image(5), 16)
    assert np.array_equal(np.asarray(first[0].images.image(5)), real(clean, "gaussian_noise", 3, 1, 5))
    # a second construction (another run with the same seed) reads the cache
    calls.clear()
    second = corr.corruption_shift(request)
    assert calls == []
    assert np.array_equal(second[0].images.pixels, first[0].images.pixels)
    # another seed is another split; a damaged file is made again
    corr.corruption_shift(ShiftRequest(spec="contrast:3", splits=digits, seed=2, image_size=16,
                                       cache_dir=str(tmp_path)))  # fmt: skip
    assert calls == ["contrast"] * n  # the seed is part of the key, even where nothing is drawn at random
    calls.clear()
    noise2 = corr.corruption_shift(ShiftRequest(spec="gaussian_noise:3", splits=digits, seed=2, image_size=16,
                                                cache_dir=str(tmp_path)))  # fmt: skip
    assert len(calls) == n and not np.array_equal(noise2[0].images.pixels, first[0].images.pixels)
    path = Path(first[1].images.path)
    path.write_bytes(path.read_bytes()[:200])
    calls.clear()
    corr.corruption_shift(request)
    assert calls == ["contrast"] * n
    # pickled (to a loader worker) without its pixels, re-opened from the file there
    clone = pickle.loads(pickle.dumps(second[0].images))
    assert clone._pixels is None and np.array_equal(np.asarray(clone.image(3)), np.asarray(second[0].images.image(3)))


def test_extra_corruptions_are_their_own_group(digits, tmp_path):
    out = corr.corruption_shift(ShiftRequest(spec="spatter,fog:1", splits=digits, image_size=8,
                                             cache_dir=str(tmp_path)))  # fmt: skip
    assert [(o.name, o.group) for o in out] == [("corruption:spatter:1", "corruption-extra"),
                                                ("corruption:fog:1", "corruption")]  # fmt: skip
    assert out[1].info["severity"] == 1 and out[1].info["category"] == "weather"


# -- domain shifts -------------------------------------------------------------------------------
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]
OTHER = "n09999999"


def _folder(root: Path, classes: list[str], per_class: int, shade: int) -> Path:
    for c, wnid in enumerate(classes):
        (root / wnid).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (12, 10), (shade, 20 * c, 10 * i)).save(root / wnid / f"{i}.png")
    return root


def _load(name: str):
    return load_dataset(PluginHost(), RunConfig(dataset=name))


def test_domain_shift_maps_classes_leaves_out_and_masks(tmp_path):
    run = _load(str(_folder(tmp_path / "photos", WNIDS, 5, 200)))
    made = [WNIDS[2], OTHER, WNIDS[0]]  # the green channel of each image is 20 x its position here
    _folder(tmp_path / "sketch", made, 3, 40)
    spec = str(tmp_path / "sketch")
    (o,) = domain_shift(ShiftRequest(spec=spec, splits=run, load_dataset=_load))
    # a folder of class folders has no official split: all its images; the foreign class left out
    assert o.name == spec and o.group is None and o.info["images"] == "all"
    assert len(o.images) == 6 and o.info["left_out"] == 3
    assert sorted(o.images.labels.tolist()) == [0, 0, 0, 2, 2, 2]
    assert o.mask.tolist() == [True, False, True, False]
    for i in range(len(o.images)):  # each image is a file of the class its label names
        assert np.asarray(o.images.image(i))[0, 0, 1] == 20 * made.index(WNIDS[o.images.labels[i]])
    assert o.domains == ["sketch"] and o.templates == domain_templates("sketch")


def test_domain_shift_uses_an_official_test_split_and_refuses_the_run_itself(tmp_path):
    run = _load(str(_folder(tmp_path / "photos", WNIDS, 5, 200)))
    other = tmp_path / "paintings"
    _folder(other / "train", WNIDS[:2], 4, 10)
    _folder(other / "val", WNIDS[:2], 2, 90)
    (o,) = domain_shift(ShiftRequest(spec=str(other), splits=run, load_dataset=_load))
    assert o.info["images"] == "test" and len(o.images) == 4 and o.mask.tolist() == [True, True, False, False]
    assert o.domains == ["paintings"] and o.templates == domain_templates("painting")
    with pytest.raises(UserError, match="run's own dataset"):
        domain_shift(ShiftRequest(spec=str(tmp_path / "photos"), splits=run, load_dataset=_load))
    with pytest.raises(UserError, match="needs a dataset"):
        domain_shift(ShiftRequest(spec="", splits=run, load_dataset=_load))
    with pytest.raises(UserError, match="shares no class|at least two classes"):
        _folder(tmp_path / "foreign", [OTHER], 2, 0)
        domain_shift(ShiftRequest(spec=str(tmp_path / "foreign"), splits=run, load_dataset=_load))


# -- through the CLI -----------------------------------------------------------------------------
@pytest.mark.slow
def test_run_with_corruption_shifts_and_vecaf_domain_prompts(cli, tmp_path):
    r = cli("run", "--dataset", "digits", "--selector", "vecaf", "--rounds", "1",
            "--set", "selector_options.iterations=20", "--batch-size", "16",
            "--shift", "corruption:gaussian_noise:3", "--shift", "corruption:fog:5",
            "--batch-budget", "10", "--label-budget", "20", "--eval-every", "5", "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert set(s["ood"]) == {"corruption:gaussian_noise:3", "corruption:fog:5"}
    assert "corruption:fog:5" in r.output  # printed as written: no ':fog:' emoji
    for v in s["ood"].values():
        assert [p["step"] for p in v["curve"]] == [5, 10] and v["top1"] == v["curve"][-1]["top1"]
        assert v["group"] == "corruption" and v["size"] == s["test_size"]
    g = s["ood_groups"]["corruption"]
    assert g["splits"] == 2
    assert np.isclose(g["top1"], np.mean([v["top1"] for v in s["ood"].values()]))
    # text_domain auto: VeCAF's annotations came from the corruptions' domain prompts
    assert "domain 'noise, fog'" in r.output


def test_bad_corruption_specs_are_named_on_the_command_line(cli, tmp_path):
    r = cli("run", "--dataset", "digits", "--shift", "corruption:gausian_noise:3", "--out", tmp_path)
    assert r.exit_code == 2 and "Did you mean 'gaussian_noise'" in r.output
    r = cli("run", "--dataset", "digits", "--shift", "corruption:fog:7", "--out", tmp_path)
    assert r.exit_code == 2 and "severity '7'" in r.output
