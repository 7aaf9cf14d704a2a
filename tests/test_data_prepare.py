"""`vecaf-bench data prepare` and `data list`: archives the tests build themselves (tar, tar.gz,
zip; a file:// URL for the download path), checksums checked, atomic placement, clear refusals."""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vecaf_bench import datastore
from vecaf_bench.data import DatasetRequest
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench_plugins.datasets.imagenet import imagenet_subset

R_WNIDS = imagenet_subset("imagenet-r")[0]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(datastore.DATA_ENV, raising=False)
    monkeypatch.setenv("COLUMNS", "250")  # rich tables and messages unwrapped
    datastore.forget_indexes()


def r_folder(top: Path, per_class: int = 3) -> Path:
    rng = np.random.default_rng(0)
    for w in R_WNIDS[:2]:
        (top / w).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(top / w / f"art_{i}.png")
    (top / "README.txt").write_text("ImageNet-R")
    return top


def r_tar(tmp_path: Path, mode: str = "w", name: str = "imagenet-r.tar") -> Path:
    src = r_folder(tmp_path / "src" / "imagenet-r")
    archive = tmp_path / name
    with tarfile.open(archive, mode) as tf:
        tf.add(src, arcname="imagenet-r")
    return archive


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(root: Path) -> list[str]:
    return [p.name for p in root.iterdir() if p.name.startswith(".prepare-")]


def test_prepare_unpacks_a_tar_checks_the_given_sha256_and_the_dataset_loads(cli, tmp_path):
    archive = r_tar(tmp_path)
    root = tmp_path / "data"
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", root, "--sha256", sha256_of(archive))
    assert r.exit_code == 0, r.output
    text = " ".join(r.output.split())
    assert f"imagenet-r is ready at {root / 'imagenet-r'}" in text
    assert sha256_of(archive) in text and "sha256 matches --sha256" in text
    assert f"vecaf-bench run --dataset imagenet-r --data-root {root}" in text
    assert sorted(p.name for p in (root / "imagenet-r").iterdir()) == ["README.txt", *R_WNIDS[:2]]
    manifest = json.loads((root / datastore.MANIFEST).read_text())["imagenet-r"]
    assert manifest["sha256"] == sha256_of(archive) and manifest["size"] == archive.stat().st_size
    assert not leftovers(root)
    s = PluginHost().datasets().get("imagenet-r").factory(DatasetRequest("imagenet-r", data_root=str(root)))
    assert len(s.pool) + len(s.test) == 6


def test_wrong_sha256_is_refused_and_nothing_is_placed(cli, tmp_path):
    archive = r_tar(tmp_path)
    root = tmp_path / "data"
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", root, "--sha256", "0" * 64)
    assert r.exit_code == 2 and "Traceback" not in r.output
    text = " ".join(r.output.split())
    assert f"has SHA-256 {sha256_of(archive)}, not the {'0' * 64} given with --sha256" in text
    assert not (root / "imagenet-r").exists() and not leftovers(root)
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", root, "--sha256", "abc")
    assert r.exit_code == 2 and "is not a SHA-256" in r.output


def test_unverified_archive_records_its_checksum_and_says_so(tmp_path):
    archive = r_tar(tmp_path, "w:gz", "imagenet-r.tar.gz")
    done = datastore.prepare_dataset(_source("imagenet-r"), str(archive), tmp_path / "data")
    assert done.sha256 == sha256_of(archive) and done.verified.startswith("not verified")
    assert json.loads(done.manifest.read_text())["imagenet-r"]["verified"] == done.verified


def test_zip_and_file_url_and_nested_top_folder(tmp_path):
    src = r_folder(tmp_path / "src" / "sketchy" / "sketch")
    del src
    archive = tmp_path / "ImageNet-Sketch.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((tmp_path / "src").rglob("*")):
            zf.write(p, p.relative_to(tmp_path / "src"))
    done = datastore.prepare_dataset(_source("imagenet-sketch"), archive.as_uri(), tmp_path / "data")
    assert done.path == tmp_path / "data" / "imagenet-sketch"
    assert (done.path / R_WNIDS[0] / "art_0.png").is_file()
    assert not (tmp_path / "data" / "ImageNet-Sketch.zip").exists()  # the download is not kept


def test_existing_dataset_needs_force(cli, tmp_path):
    archive = r_tar(tmp_path)
    root = tmp_path / "data"
    assert cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", root).exit_code == 0
    (root / "imagenet-r" / "marker").write_text("old copy")
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", root)
    assert r.exit_code == 2 and "is already there" in r.output and "--force" in r.output
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", root, "--force")
    assert r.exit_code == 0, r.output
    assert not (root / "imagenet-r" / "marker").exists() and not leftovers(root)


def test_folder_is_copied_or_linked(cli, tmp_path):
    src = r_folder(tmp_path / "downloads" / "imagenet-r")
    r = cli("data", "prepare", "imagenet-r", "--from", src.parent, "--data-root", tmp_path / "a")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "a" / "imagenet-r" / R_WNIDS[1]).is_dir() and not (tmp_path / "a" / "imagenet-r").is_symlink()
    r = cli("data", "prepare", "imagenet-r", "--from", src, "--data-root", tmp_path / "b", "--link")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "b" / "imagenet-r").resolve() == src.resolve()
    r = cli("data", "prepare", "imagenet-r", "--from", src, "--data-root", tmp_path / "b", "--link", "--force")
    assert r.exit_code == 2 and "already is" in r.output and src.is_dir()  # never deletes its own source


def test_archive_without_the_dataset_is_refused(cli, tmp_path):
    archive = tmp_path / "other.tar"
    (tmp_path / "x" / "cats").mkdir(parents=True)
    (tmp_path / "x" / "cats" / "a.txt").write_text("a")
    with tarfile.open(archive, "w") as tf:
        tf.add(tmp_path / "x", arcname="x")
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", tmp_path / "data")
    assert r.exit_code == 2
    assert "does not hold dataset 'imagenet-r'" in " ".join(r.output.split())
    assert not leftovers(tmp_path / "data")
    r = cli("data", "prepare", "imagenet-r", "--from", tmp_path / "nope.tar", "--data-root", tmp_path / "data")
    assert r.exit_code == 2 and "does not exist" in r.output


def test_tar_member_escaping_the_folder_is_refused(cli, tmp_path):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tf:
        info = tarfile.TarInfo("../../escaped.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    r = cli("data", "prepare", "imagenet-r", "--from", archive, "--data-root", tmp_path / "data")
    assert r.exit_code == 2 and "could not be unpacked" in r.output
    assert not list(tmp_path.rglob("escaped.txt"))


def _cifar_targz(path: Path) -> Path:
    buf = {}
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        buf[name] = pickle.dumps({"data": rng.integers(0, 255, (2, 3072), dtype=np.uint8), "labels": [0, 1]})
    buf["batches.meta"] = pickle.dumps({"label_names": [f"c{i}" for i in range(10)]})
    with tarfile.open(path, "w:gz") as tf:
        for name, data in buf.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_cifar_archive_is_checked_against_the_official_md5(cli, tmp_path):
    fake = _cifar_targz(tmp_path / "cifar-10-python.tar.gz")  # the official name, other bytes
    r = cli("data", "prepare", "cifar10", "--from", fake, "--data-root", tmp_path / "data")
    assert r.exit_code == 2
    assert "but the official cifar-10-python.tar.gz has c58f30108f718f92721af3b95e74349a" in " ".join(r.output.split())
    mine = _cifar_targz(tmp_path / "my-cifar.tar.gz")
    r = cli("data", "prepare", "cifar10", "--from", mine, "--data-root", tmp_path / "data")
    assert r.exit_code == 0, r.output
    assert (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_5").is_file()
    s = PluginHost().datasets().get("cifar10").factory(DatasetRequest("cifar10", data_root=str(tmp_path / "data")))
    assert (len(s.pool), len(s.test)) == (10, 2)


def test_data_list_and_nothing_to_prepare_for_shipped_data(cli, tmp_path):
    r_folder(tmp_path / "imagenet-r")
    r = cli("data", "list", "--data-root", tmp_path)
    assert r.exit_code == 0, r.output
    lines = {line.split()[1]: line for line in r.output.splitlines() if line.startswith("│")}
    assert "ready" in lines["imagenet-r"] and str(tmp_path / "imagenet-r") in lines["imagenet-r"]
    assert "missing" in lines["imagenet-a"] and "imagenet-a/imagenet-a" in lines["imagenet-a"]
    assert "built in" in lines["digits"] and "missing" in lines["cifar10"]
    r = cli("data", "prepare", "digits", "--from", tmp_path)
    assert r.exit_code == 2 and "nothing to prepare" in r.output
    r = cli("data", "prepare", "imagenet-rr", "--from", tmp_path)
    assert r.exit_code == 2 and "Did you mean 'imagenet-r'?" in r.output


def _source(name: str) -> datastore.DataSource:
    return PluginHost().datasets().get(name).factory.source
