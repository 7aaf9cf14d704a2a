"""Folder datasets read strictly: train/, val/ and test/ are never class names, a one-class or
too-small folder is refused with what to do, and a train/ without val/ is split out loud."""

from pathlib import Path

import numpy as np
import pytest
from conftest import summary_of
from PIL import Image

RUN = ["--label-budget", "4", "--batch-budget", "2", "--batch-size", "4", "--eval-every", "0", "--image-size", "32"]


def images(folder: Path, n: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def assert_user_error(result, *fragments: str) -> None:
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    for frag in fragments:
        assert frag in text, f"{frag!r} not in {text!r}"


def test_train_without_val_is_split_and_says_so(cli, tmp_path):
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        images(data / "train" / c, 5)
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "no val/ or test/ beside train/: holding out test_fraction=0.2 of train/" in r.output
    assert "split seed 0" in r.output
    s = summary_of(tmp_path / "o")
    assert s["num_classes"] == 2  # cat and dog, never one class named "train"
    assert s["pool_size"] + s["val_size"] + s["test_size"] == 10 and s["test_size"] == 2
    assert s["dataset_info"]["layout"] == "train/ split"
    assert s["dataset_info"]["split"]["test_fraction"] == 0.2


def test_train_and_test_folders_keep_their_split(cli, tmp_path):
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        images(data / "train" / c, 4)
        images(data / "test" / c, 2, seed=1)
    (data / "models").mkdir()  # not a class: only train/ holds classes
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert r.exit_code == 0, r.output
    assert "reading train/ and test/ only; the other sub-folders beside them (models) are not read" in r.output
    s = summary_of(tmp_path / "o")
    assert (s["num_classes"], s["pool_size"] + s["val_size"], s["test_size"]) == (2, 8, 4)
    assert s["dataset_info"]["layout"] == "train/val"


def test_split_folders_without_train_are_never_classes(cli, tmp_path):
    data = tmp_path / "data"
    for split in ("val", "test"):
        images(data / split / "cat", 3)
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert_user_error(r, f"dataset folder '{data}' has val/ and test/ but no train/ beside it",
                      "never class names", f"--dataset '{data / 'val'}'")


def test_test_class_missing_from_train_is_named(cli, tmp_path):
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        images(data / "train" / c, 3)
    images(data / "val" / "cat", 2)
    images(data / "val" / "dgo", 2)
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert_user_error(r, f"test folder '{data / 'val'}' has class folders that '{data / 'train'}' lacks: dgo",
                      "Did you mean 'dog'?", "rename or remove")


@pytest.mark.parametrize("nested", [False, True])
def test_one_class_is_refused(cli, tmp_path, nested):
    data = tmp_path / "data"
    where = data / "train" if nested else data
    images(where / "cat", 6)
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert_user_error(r, f"dataset folder '{where}' has one class sub-folder, 'cat'", "at least two classes",
                      "Add one sub-folder per class", f"pass --dataset '{where / 'cat'}'")


def test_one_class_with_images_is_refused(cli, tmp_path):
    data = tmp_path / "data"
    images(data / "cat", 4)
    (data / "dog").mkdir()
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert_user_error(r, f"dataset folder '{data}' has readable images in only one class, 'cat' (none in dog)",
                      "at least two classes", "add images")


def test_one_image_per_class_says_there_is_nothing_to_test_on(cli, tmp_path):
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        images(data / c, 1)
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert_user_error(r, f"dataset folder '{data}' has too few images to hold out a test split",
                      "2 readable image(s) in 2 classes", "test_fraction=0.2 gives 0 test images",
                      "Add images (at least two per class)", f"'{data}/val/<class>/'")
    assert "no readable images left" not in r.output


def test_all_images_corrupt_says_so(cli, tmp_path):
    data = tmp_path / "data"
    for c in ("cat", "dog"):
        (data / c).mkdir(parents=True)
        (data / c / "0.png").write_bytes(b"not a png")
    r = cli("run", "--dataset", data, *RUN, "--out", tmp_path / "o")
    assert_user_error(r, f"dataset folder '{data}' has no readable images left: all 2 image file(s)",
                      "could not be decoded")
