"""Named datasets under the data root: the ImageNet family (class maps, 200-class subsets,
domains, deterministic splits), CIFAR from its pickles, the missing-data message, and the
cached file index (built once, invalidated by a change, light to pickle for loader workers)."""

from __future__ import annotations

import os
import pickle
import shutil
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import summary_of
from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
from PIL import Image
from timm.data import ImageNetInfo

from vecaf_bench import datastore
from vecaf_bench.data import DatasetRequest, FileImages
from vecaf_bench.errors import UserError
from vecaf_bench.features import extract
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench.shifts import align_classes
from vecaf_bench.transforms import Normalize, eval_transform
from vecaf_bench_plugins.datasets.imagenet import IMAGENET_R_DOMAINS, imagenet_subset, imagenet_wnids

R_WNIDS, R_INDICES = imagenet_subset("imagenet-r")
PICKED = (0, 5, 17)  # ImageNet-R classes the tiny folders hold


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost()


@pytest.fixture(autouse=True)
def _fresh_index(monkeypatch):
    monkeypatch.delenv(datastore.DATA_ENV, raising=False)
    datastore.forget_indexes()


def write_images(folder: Path, n: int, seed: int = 0, prefix: str = "art") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{prefix}_{i}.png")


def imagenet_r_folder(root: Path, per_class: int = 5) -> Path:
    for k in PICKED:
        write_images(root / R_WNIDS[k], per_class, seed=k)
    return root


def age(root: Path, seconds: float = 100.0) -> None:
    """Backdates every folder's mtime, as if the data had been on disk for a while."""
    t = time.time() - seconds
    for d, _, _ in os.walk(root):
        os.utime(d, (t, t))


def load(host: PluginHost, name: str, data_root: Path, **kw):
    return host.datasets().get(name).factory(DatasetRequest(name=name, data_root=str(data_root), **kw))


# -- the ImageNet family --------------------------------------------------------------------------
def test_imagenet_r_loads_with_its_200_classes_names_domains_and_a_fixed_split(host, tmp_path):
    imagenet_r_folder(tmp_path / "data" / "imagenet-r")
    s = load(host, "imagenet-r", tmp_path / "data")
    assert s.name == "imagenet-r"
    assert s.classes == list(R_WNIDS) and s.num_classes == 200
    names = list(IMAGENET_CLASSNAMES)
    assert s.class_names == [names[i] for i in R_INDICES]
    assert s.domains == IMAGENET_R_DOMAINS and "sketches" in s.domains and len(s.domains) == 16
    assert len(s.pool) + len(s.test) == 15
    assert set(s.pool.labels.tolist()) == set(s.test.labels.tolist()) == set(PICKED)
    # every image's label is the position of its folder's wnid in ImageNet-R's synset order
    for src in (s.pool, s.test):
        for i in range(len(src)):
            assert src.paths[i].parent.name == R_WNIDS[src.labels[i]]
    assert len(s.info["split"]["test_files"]) == len(s.test)
    assert s.info["classes_present"] == 3
    # the split is deterministic and independent of the run seed; the test fraction moves it
    again = load(host, "imagenet-r", tmp_path / "data", seed=7)
    assert again.info["split"]["test_files"] == s.info["split"]["test_files"]
    assert again.pool.fingerprint == s.pool.fingerprint
    bigger = load(host, "imagenet-r", tmp_path / "data", test_fraction=0.4)
    assert len(bigger.test) == 6 and bigger.pool.fingerprint != s.pool.fingerprint


def test_data_root_from_env_and_archive_top_folder(host, tmp_path, monkeypatch):
    imagenet_r_folder(tmp_path / "data" / "imagenet-r" / "imagenet-r")  # the tar's top folder, kept
    monkeypatch.setenv(datastore.DATA_ENV, str(tmp_path / "data"))
    s = host.datasets().get("imagenet-r").factory(DatasetRequest(name="imagenet-r"))
    assert s.info["root"] == str(tmp_path / "data" / "imagenet-r" / "imagenet-r")


def test_class_map_of_the_200_class_subsets_is_timms():
    wnids_1k = ImageNetInfo().label_names()
    assert list(imagenet_wnids()) == wnids_1k
    for name in ("imagenet-r", "imagenet-a"):
        wnids, indices = imagenet_subset(name)
        assert len(wnids) == len(indices) == 200 and len(set(indices)) == 200
        for k, (w, i) in enumerate(zip(wnids, indices, strict=True)):
            assert wnids_1k[i] == w, (name, k)


def test_imagenet_r_as_ood_split_of_imagenet_is_masked_to_its_200_classes(host, tmp_path):
    imagenet_r_folder(tmp_path / "imagenet-r")
    s = load(host, "imagenet-r", tmp_path)
    relabeled, mask = align_classes(s.test, s.classes, list(imagenet_wnids()), "imagenet-r")
    assert mask is not None and mask.shape == (1000,)
    assert np.flatnonzero(mask).tolist() == sorted(R_INDICES)
    assert relabeled.labels.tolist() == [R_INDICES[k] for k in s.test.labels]


def test_sketch_v2_a_and_imagenet_layouts(host, tmp_path):
    wnids = imagenet_wnids()
    write_images(tmp_path / "imagenet-sketch" / "sketch" / wnids[3], 4)
    write_images(tmp_path / "imagenet-sketch" / "sketch" / wnids[900], 4, seed=1)
    sk = load(host, "imagenet-sketch", tmp_path)
    assert sk.num_classes == 1000 and sk.domains == ["sketch"]
    assert set(sk.pool.labels.tolist()) == {3, 900} and sk.class_names[3] == IMAGENET_CLASSNAMES[3]

    v2 = tmp_path / "imagenetv2-matched-frequency-format-val"
    write_images(v2 / "0", 3)
    write_images(v2 / "7", 3, seed=2)
    s = load(host, "imagenet-v2", tmp_path)
    assert s.classes == list(wnids) and set(s.pool.labels.tolist()) == {0, 7}
    assert all(s.pool.paths[i].parent.name == str(s.pool.labels[i]) for i in range(len(s.pool)))

    a_wnids, _ = imagenet_subset("imagenet-a")
    write_images(tmp_path / "imagenet-a" / a_wnids[1], 3)
    a = load(host, "imagenet-a", tmp_path)
    assert a.classes == list(a_wnids) and a.domains and set(a.pool.labels.tolist()) == {1}

    for split in ("train", "val"):
        write_images(tmp_path / "imagenet" / split / wnids[1], 2)
        write_images(tmp_path / "imagenet" / split / wnids[2], 2, seed=3)
    im = load(host, "imagenet", tmp_path)
    assert len(im.pool) == len(im.test) == 4 and "split" not in im.info
    assert all("/train/" in str(p) for p in im.pool.paths) and all("/val/" in str(p) for p in im.test.paths)


def test_flat_imagenet_val_is_explained(host, tmp_path):
    write_images(tmp_path / "imagenet" / "train" / imagenet_wnids()[0], 2)
    write_images(tmp_path / "imagenet" / "val", 3, prefix="ILSVRC2012_val")
    with pytest.raises(UserError) as e:
        load(host, "imagenet", tmp_path)
    msg = str(e.value)
    assert f"{tmp_path / 'imagenet'} (its val/ holds 3 image files directly" in msg
    assert "valprep.sh" in msg and "https://image-net.org/download.php" in msg


def test_a_folder_that_is_no_class_is_refused_by_name(host, tmp_path):
    imagenet_r_folder(tmp_path / "imagenet-r", per_class=2)
    write_images(tmp_path / "imagenet-r" / "cats", 2)
    with pytest.raises(UserError, match=r"no imagenet-r class: cats\."):
        load(host, "imagenet-r", tmp_path)


# -- CIFAR ------------------------------------------------------------------------------------------
def _cifar_pickle(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def cifar_folder(root: Path, hundred: bool = False, per_batch: int = 4) -> Path:
    """An official-shaped python archive folder: CHW rows of uint8, label lists, a meta file."""
    rng = np.random.default_rng(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    n_classes = 100 if hundred else 10

    def batch(n: int, offset: int) -> dict:
        data = rng.integers(0, 255, (n, 3072), dtype=np.uint8)
        data[0, :1024] = 255  # image 0 of each batch: a pure red channel
        data[0, 1024:] = 0
        labels = [(offset + i) % n_classes for i in range(n)]
        if hundred:  # bytes keys, as Python 2 pickles read with encoding='bytes' have
            return {b"data": data, b"fine_labels": labels, b"coarse_labels": [0] * n}
        return {"data": data, "labels": labels, "batch_label": "x"}

    if hundred:
        (folder / "train").write_bytes(_cifar_pickle(batch(2 * per_batch, 0)))
        (folder / "test").write_bytes(_cifar_pickle(batch(per_batch, 1)))
        names = [f"class_{i}".encode() for i in range(100)]
        (folder / "meta").write_bytes(_cifar_pickle({b"fine_label_names": names, b"coarse_label_names": []}))
    else:
        for b in range(1, 6):
            (folder / f"data_batch_{b}").write_bytes(_cifar_pickle(batch(per_batch, b)))
        (folder / "test_batch").write_bytes(_cifar_pickle(batch(per_batch, 0)))
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
        (folder / "batches.meta").write_bytes(_cifar_pickle({"label_names": names, "num_vis": 3072}))
    return folder


def targz(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tf:
        tf.add(folder, arcname=folder.name)
    return dest


def test_cifar10_from_folder_and_from_targz(host, tmp_path):
    folder = cifar_folder(tmp_path / "src")
    shutil.copytree(folder, tmp_path / "a" / folder.name)
    s = load(host, "cifar10", tmp_path / "a")
    assert (len(s.pool), len(s.test)) == (20, 4)
    assert s.classes[:2] == ["airplane", "automobile"] and s.num_classes == 10
    assert s.pool.pixels.shape == (20, 32, 32, 3) and s.pool.pixels.dtype == np.uint8
    red = np.asarray(s.pool.image(0))
    assert (red[..., 0] == 255).all() and (red[..., 1:] == 0).all()
    assert s.pool.labels[:4].tolist() == [1, 2, 3, 4]
    assert s.default_image_size is None
    (tmp_path / "b").mkdir()
    targz(folder, tmp_path / "b" / "cifar-10-python.tar.gz")
    t = load(host, "cifar10", tmp_path / "b")
    assert t.info["root"].endswith("cifar-10-python.tar.gz")
    assert np.array_equal(t.pool.pixels, s.pool.pixels) and t.pool.fingerprint == s.pool.fingerprint


def test_cifar100_fine_labels(host, tmp_path):
    cifar_folder(tmp_path, hundred=True)
    s = load(host, "cifar100", tmp_path)
    assert s.num_classes == 100 and s.classes[5] == "class_5" and s.class_names[5] == "class 5"
    assert (len(s.pool), len(s.test)) == (8, 4) and s.test.labels.tolist() == [1, 2, 3, 4]


def test_cifar_pickle_that_would_run_code_is_refused(host, tmp_path):
    folder = cifar_folder(tmp_path)
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(UserError, match="refusing to load"):
        load(host, "cifar10", tmp_path)
    assert not marker.exists()


# -- missing data -----------------------------------------------------------------------------------
def test_missing_dataset_names_paths_download_page_and_prepare_command(cli, tmp_path):
    root = tmp_path / "empty"
    (root / "imagenet-r" / "cats").mkdir(parents=True)  # there, but not ImageNet-R
    r = cli("run", "--dataset", "imagenet-r", "--data-root", root, "--out", tmp_path / "o")
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    text = " ".join(r.output.split())
    for candidate in ("imagenet-r", "imagenet-r/imagenet-r", "imagenet_r", "ImageNet-R"):
        assert str(root / candidate) in text
    assert f"{root / 'imagenet-r'} (holds no WordNet-id class folders" in text
    assert "https://github.com/hendrycks/imagenet-r" in text
    assert "https://people.eecs.berkeley.edu/~hendrycks/imagenet-r.tar" in text
    assert f"vecaf-bench data prepare imagenet-r --from PATH_OR_URL --data-root {root}" in text


def test_missing_cifar_via_env_names_the_env_and_the_archive(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(datastore.DATA_ENV, str(tmp_path))
    r = cli("run", "--dataset", "cifar100", "--out", tmp_path / "o")
    assert r.exit_code == 2
    text = " ".join(r.output.split())
    assert f"data root '{tmp_path}' ($VECAF_BENCH_DATA)" in text
    assert str(tmp_path / "cifar-100-python.tar.gz") in text
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in text and "cifar-100-python.tar.gz" in text
    assert "vecaf-bench data prepare cifar100 --from PATH_OR_URL" in text


# -- the file index ---------------------------------------------------------------------------------
def test_index_is_built_once_cached_and_invalidated_by_a_new_file(tmp_path, monkeypatch):
    root = imagenet_r_folder(tmp_path / "imagenet-r", per_class=3)
    age(root)
    calls = []
    real = datastore._list_folder
    monkeypatch.setattr(datastore, "_list_folder", lambda *a: (calls.append(a[1]), real(*a))[1])
    folders = {R_WNIDS[k]: k for k in PICKED}
    cache = tmp_path / "cache"

    first = datastore.index_folders(root, folders, cache_dir=cache)
    assert first.origin == "built" and len(first.files) == 9 and len(calls) == 3
    assert datastore.index_folders(root, folders, cache_dir=cache).origin == "memory"
    datastore.forget_indexes()  # a new process: read from disk, nothing listed
    second = datastore.index_folders(root, folders, cache_dir=cache)
    assert second.origin == "cache" and len(calls) == 3
    assert [str(p) for p in second.files] == [str(p) for p in first.files]
    assert second.fingerprint == first.fingerprint and second.labels.tolist() == first.labels.tolist()

    write_images(root / R_WNIDS[5], 1, seed=9, prefix="new")  # a new file: its folder's mtime moves
    third = datastore.index_folders(root, folders, cache_dir=cache)
    assert third.origin == "built" and len(third.files) == 10 and third.fingerprint != first.fingerprint
    datastore.forget_indexes()
    age(root)
    (root / R_WNIDS[0] / "art_0.png").unlink()  # a removed file
    assert len(datastore.index_folders(root, folders, cache_dir=cache).files) == 9


def test_corrupt_image_is_remembered_by_the_cached_index(host, tmp_path, capsys):
    imagenet_r_folder(tmp_path / "imagenet-r", per_class=3)
    bad = tmp_path / "imagenet-r" / R_WNIDS[0] / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    age(tmp_path / "imagenet-r")
    for _ in range(2):  # built, then from the cache: reported both times
        datastore.forget_indexes()
        with pytest.raises(UserError, match=str(bad)):
            load(host, "imagenet-r", tmp_path, on_corrupt="error")
    s = load(host, "imagenet-r", tmp_path, on_corrupt="skip")
    assert len(s.pool) + len(s.test) == 9 and any(str(bad) in x for x in s.info["skipped"])
    assert str(bad) in capsys.readouterr().err


def test_file_images_pickle_light_and_extract_the_same_with_workers(host, tmp_path):
    imagenet_r_folder(tmp_path / "imagenet-r", per_class=6)
    s = load(host, "imagenet-r", tmp_path)
    pool = s.pool
    assert isinstance(pool, FileImages) and isinstance(pool.paths, datastore.PathTable)
    blob = pickle.dumps(pool)
    assert len(blob) < 4096 and b"PosixPath" not in blob
    back = pickle.loads(blob)
    assert [str(p) for p in back.paths] == [str(p) for p in pool.paths]
    assert np.array_equal(np.asarray(back.image(3)), np.asarray(pool.image(3)))
    sub = pool.subset(np.array([4, 1]), "two")
    assert [str(p) for p in sub.paths] == [str(pool.paths[4]), str(pool.paths[1])]

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    data_config = {"input_size": (3, 16, 16), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    normalize = Normalize(data_config, torch.device("cpu"))
    feats = {w: np.zeros((len(pool), 4), dtype=np.float32) for w in (0, 2)}
    for workers, out in feats.items():
        extract(lambda m, x: m(x), model, pool, eval_transform(data_config), normalize,
                lambda d, out=out: out, batch_size=4, num_workers=workers)  # fmt: skip
    assert np.abs(feats[0]).sum() > 0 and np.array_equal(feats[0], feats[2])


def test_path_table_reads_like_a_list_of_paths(tmp_path):
    t = datastore.PathTable.from_strings(tmp_path, ["a/1.png", "b/ü 2.jpg", "c/3.png"])
    assert len(t) == 3 and t[1] == tmp_path / "b" / "ü 2.jpg" and t[-1] == tmp_path / "c" / "3.png"
    assert [p.name for p in t[1:]] == ["ü 2.jpg", "3.png"]
    assert list(t.take(np.array([2, 0]))) == [tmp_path / "c" / "3.png", tmp_path / "a" / "1.png"]
    with pytest.raises(IndexError):
        t[3]


# -- end to end -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_run_on_imagenet_r_under_data_root(cli, tmp_path):
    imagenet_r_folder(tmp_path / "data" / "imagenet-r", per_class=6)
    r = cli("run", "--dataset", "imagenet-r", "--data-root", tmp_path / "data", "--batch-budget", "4",
            "--label-budget", "8", "--image-size", "32", "--batch-size", "8", "--selector", "random",
            "--out", tmp_path / "o")  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path / "o")
    assert s["num_classes"] == 200 and s["label_budget"] == 8 and s["steps"] == 4
    assert s["pool_size"] + s["val_size"] + s["test_size"] == 18
    assert s["dataset_info"]["split"]["seed"] == 0
