"""`vecaf-bench select --dataset DIR`: choosing what to label in a folder of unlabelled images.

Real images (scikit-learn's digits written as PNG files, flat and nested), the shipped
EfficientNet-Lite0 weights at 32 px: the picks are paths in the folder, in pick order; the
features are cached, reused, and resumed after an interruption; every bad input is one paragraph
with exit code 2."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from vecaf_bench.features import FeatureCache

FAST = ["--image-size", "32", "--batch-size", "32"]


def write_digits(root: Path, n: int, *, nested: bool = True, classes: bool = False) -> list[str]:
    """N digit images as PNG files under ROOT: every third in a sub-folder (or one folder per digit)."""
    d = load_digits()
    names = []
    for i in range(n):
        sub = f"{d.target[i]}/" if classes else ("more/deeper/" if nested and i % 3 == 0 else "")
        path = root / f"{sub}img_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((d.images[i] * 15).astype(np.uint8)).resize((24, 24)).convert("RGB").save(path)
        names.append(f"{sub}img_{i:04d}.png")
    return names


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("unlabelled") / "photos"
    write_digits(root, 120)
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_picks_are_paths_in_pick_order_and_features_are_reused(cli, folder, tmp_path):
    first = cli("select", "--dataset", folder, "--budget", "12", "--selector", "kmeans", *FAST,
                "--out", tmp_path / "picks.csv")
    assert first.exit_code == 0, first.output
    assert "features: extracted 120 x" in first.output
    rows = read_csv(tmp_path / "picks.csv")
    assert [r["rank"] for r in rows] == [str(k) for k in range(1, 13)]
    files = {str(p.relative_to(folder)) for p in folder.rglob("*.png")}
    assert {r["path"] for r in rows} <= files and len({r["path"] for r in rows}) == 12
    assert any("/" in r["path"] for r in rows) or all("/" not in r["path"] for r in rows)
    assert {r["selector"] for r in rows} == {"kmeans"} and rows[0]["backbone"] == "timm:tf_efficientnet_lite0@32px"
    again = cli("select", "--dataset", folder, "--budget", "12", "--selector", "kmeans", *FAST,
                "--out", tmp_path / "again.jsonl")
    assert again.exit_code == 0, again.output
    assert "features: reused cache" in again.output and "features: extracted" not in again.output
    lines = [json.loads(x) for x in (tmp_path / "again.jsonl").read_text().splitlines()]
    assert [x["path"] for x in lines] == [r["path"] for r in rows], "same seed, same picks, in any format"


def test_label_studio_tasks_carry_the_url_prefix(cli, folder, tmp_path):
    r = cli("select", "--dataset", folder, "--budget", "5", "--selector", "random", *FAST,
            "--out", tmp_path / "tasks.json", "--url-prefix", "/data/local-files/?d=photos/")
    assert r.exit_code == 0, r.output
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 5 and all(t["data"]["image"].startswith("/data/local-files/?d=photos/img_")
                                   or t["data"]["image"].startswith("/data/local-files/?d=photos/more/") for t in tasks)
    assert [t["meta"]["rank"] for t in tasks] == [1, 2, 3, 4, 5]


def test_a_second_round_grows_the_first_and_exclude_is_never_picked(cli, folder, tmp_path):
    one = cli("select", "--dataset", folder, "--budget", "10", "--selector", "activeft", *FAST,
              "--out", tmp_path / "r1.csv")
    assert one.exit_code == 0, one.output
    r1 = [r["path"] for r in read_csv(tmp_path / "r1.csv")]
    (tmp_path / "bad.json").write_text(json.dumps(sorted(set(sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*.png"))) - set(r1))[:50]))
    excluded = set(json.loads((tmp_path / "bad.json").read_text()))
    two = cli("select", "--dataset", folder, "--budget", "10", "--selector", "activeft", *FAST,
              "--selected", tmp_path / "r1.csv", "--exclude", tmp_path / "bad.json", "--out", tmp_path / "r2.csv")
    assert two.exit_code == 0, two.output
    r2 = [r["path"] for r in read_csv(tmp_path / "r2.csv")]
    assert len(r2) == 10 and not set(r2) & set(r1) and not set(r2) & excluded


def test_preview_draws_the_picks_beside_a_random_draw(cli, folder, tmp_path):
    r = cli("select", "--dataset", folder, "--budget", "9", "--selector", "typiclust", *FAST,
            "--out", tmp_path / "p.csv", "--preview", tmp_path / "p.png")
    assert r.exit_code == 0, r.output
    im = np.asarray(Image.open(tmp_path / "p.png").convert("L"), dtype=float)
    assert im.shape[1] > 1.8 * im.shape[0] * 0.5 and im.std() > 20  # two panels, not a blank page
    left, right = im[:, : im.shape[1] // 2], im[:, im.shape[1] // 2:]
    assert (left < 40).mean() > 0.05 and (right < 40).mean() > 0.05  # dark digits on both sides


def test_label_using_selector_reads_class_folders(cli, folder, tmp_path, monkeypatch):
    """Class folders are ignored by label-free selectors and read as labels by one that declares them."""
    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "examples" / "vecaf-bench-example-plugin"))
    root = tmp_path / "sorted"
    write_digits(root, 60, classes=True)
    plug = ["--plugin", "vecaf_bench_example.class_balanced"]
    r = cli("select", "--dataset", root, "--budget", "10", "--selector", "class_balanced", *plug, *FAST,
            "--out", tmp_path / "x.csv")
    assert r.exit_code == 0, r.output
    assert sorted(row["path"].split("/")[0] for row in read_csv(tmp_path / "x.csv")) == [str(c) for c in range(10)]
    flat = cli("select", "--dataset", folder, "--budget", "3", "--selector", "class_balanced", *plug, *FAST,
               "--out", tmp_path / "y.csv")
    assert flat.exit_code == 2 and "not in a class folder" in flat.output
    whole = cli("select", "--dataset", root, "--budget", "6", "--selector", "full", *FAST, "--out", tmp_path / "z.csv")
    assert whole.exit_code == 2 and "whole pool" in whole.output


def test_interrupted_extraction_resumes_where_it_stopped(tmp_path, monkeypatch):
    """Rows before the interruption are kept and not recomputed; the result equals one uninterrupted pass."""
    import vecaf_bench.features as features

    root = tmp_path / "imgs"
    write_digits(root, 100, nested=False)
    from rich.console import Console

    from vecaf_bench.pluginmanager import PluginHost
    from vecaf_bench.selectfolder import folder_features, load_image_folder

    pool = load_image_folder(root, cache_dir=str(tmp_path / "c1"))
    kw = dict(backbone="timm:tf_efficientnet_lite0", weights="default", image_size=32, device="cpu",
              batch_size=16, num_workers=0, host=PluginHost([]), console=Console(stderr=True))
    whole, info, _ = folder_features(pool, cache_dir=str(tmp_path / "c1"), **kw)
    assert info["cached"] is False and info["images"] == 100

    real = features.extract
    seen: list[int] = []

    def dying(*args, **kwargs):
        on_batch = kwargs["on_batch"]

        def counting(k):
            on_batch(k)
            seen.append(k)
            if sum(seen) >= 48:
                raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_batch": counting})

    monkeypatch.setattr("vecaf_bench.run.features.extract", dying)
    monkeypatch.setattr(FeatureCache.extract_resumable, "__defaults__", (16, 30.0))
    with pytest.raises(KeyboardInterrupt):
        folder_features(pool, cache_dir=str(tmp_path / "c2"), **kw)
    cache = FeatureCache(tmp_path / "c2")
    key = next(p.name.split(".")[0] for p in cache.root.glob("*.partial.json"))
    done, _ = cache.partial_done(key, 100)
    assert done == 48
    monkeypatch.setattr("vecaf_bench.run.features.extract", real)
    resumed, info2, _ = folder_features(pool, cache_dir=str(tmp_path / "c2"), **kw)
    assert info2["resumed_from"] == 48 and info2["images"] == 52, "only the rows after the stop are computed"
    np.testing.assert_allclose(np.asarray(resumed), np.asarray(whole), rtol=1e-5, atol=1e-5)
    assert not list(cache.root.glob("*.partial.*"))


# -- bad input: one paragraph, exit 2 ----------------------------------------------------------------
def test_bad_inputs_are_one_paragraph_with_exit_2(cli, folder, tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "notes.txt").write_text("no images")
    out = tmp_path / "o.csv"
    cases = [
        (["--dataset", empty, "--budget", "3"], "holds no image files"),
        (["--dataset", tmp_path / "nope", "--budget", "3"], "does not exist"),
        (["--dataset", folder, "--budget", "500"], "more than the 120 images left"),
        (["--dataset", folder, "--budget", "3", "--selector", "entropy"], "label-free selector"),
        (["--dataset", folder, "--budget", "3", "--selector", "vecaf"], "text embeddings"),
        (["--dataset", folder, "--budget", "3", "--out", tmp_path / "missing" / "o.csv"], "does not exist"),
        (["--dataset", folder, "--budget", "3", "--out", tmp_path / "o.txt"], "cannot tell the format"),
        (["--dataset", folder, "--budget", "3", "--preview", tmp_path / "gone" / "p.png"], "does not exist"),
        (["--dataset", folder, "--features", "F.npy", "--budget", "3"], "not both"),
    ]
    (tmp_path / "foreign.csv").write_text("rank,path\n1,img_0001.png\n2,elsewhere/cat.png\n3,dog.png\n")
    cases.append((["--dataset", folder, "--budget", "3", "--selected", tmp_path / "foreign.csv"],
                  "2 of its 3 images are not in the folder (elsewhere/cat.png, dog.png)"))
    for args, words in cases:
        argv = ["select", "--selector", "random", *FAST, *args]
        if "--out" not in args:
            argv += ["--out", out]
        r = cli(*argv)
        assert r.exit_code == 2, (args, r.output)
        assert words in " ".join(r.output.split()), (args, r.output)
        assert "Traceback" not in r.output


def test_corrupt_images_are_listed_and_skipped_or_fatal(cli, tmp_path):
    root = tmp_path / "mixed"
    write_digits(root, 30, nested=False)
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    skip = cli("select", "--dataset", root, "--budget", "30", "--selector", "random", *FAST,
               "--out", tmp_path / "s.csv")
    assert skip.exit_code == 0, skip.output
    assert "skipped 1 corrupt image" in skip.output and "broken.png" in skip.output
    assert "broken.png" not in (tmp_path / "s.csv").read_text()
    fatal = cli("select", "--dataset", root, "--budget", "3", "--selector", "random", *FAST, "--on-corrupt", "error",
                "--out", tmp_path / "f.csv")
    assert fatal.exit_code == 2 and "broken.png" in fatal.output and "--on-corrupt skip" in fatal.output
    only_bad = tmp_path / "bad-only"
    only_bad.mkdir()
    (only_bad / "a.jpg").write_bytes(b"garbage")
    r = cli("select", "--dataset", only_bad, "--budget", "1", *FAST, "--out", tmp_path / "b.csv")
    assert r.exit_code == 2 and "no readable image" in r.output
