"""Conformance checks for the other plugin kinds: backbones, datasets, text encoders, shifts and
trackers. Call them from your plugin's own tests:

    from vecaf_bench.testing import check_backbone, check_dataset, check_tracker
    from vecaf_bench.api import DatasetRequest

    def test_my_backbone_conforms():
        check_backbone(MyBackbone, "small", weights="none")

    def test_my_dataset_conforms(tmp_path):
        check_dataset(load_mine, DatasetRequest("mine", data_root=str(tmp_path)))

    def test_my_tracker_conforms(tmp_path):
        check_tracker(MyTracker, RunConfig(), tmp_path / "run")

Each `check_<kind>` runs every check of its kind; each check is also public on its own. A failed
check raises `AssertionError` whose message names the plugin, the check and what went wrong:
``backbone 'timm:resnet18' failed check 'classifier': ...``. Inputs are tiny (two 32 px images, a
handful of sentences, a fake run of four steps), so a kit takes seconds: what it costs is the
plugin's own construction (loading weights, reading the dataset).

What is checked is what the engine relies on: shapes, dtypes, finiteness, fingerprints that are
stable (they key the caches) and tell splits apart, labels inside the label space, and, for
trackers, that they only observe (the engine writes summary.json, events.jsonl, selected.json,
config.yaml and checkpoint.pt; a tracker that writes one of them is a failure).
"""

from __future__ import annotations

import copy
import hashlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pluggy
import torch
from PIL import Image
from torch import nn

from vecaf_bench import hookspecs
from vecaf_bench.api import (
    PROJECT,
    DatasetRequest,
    DatasetSplits,
    EvalPoint,
    ImageSource,
    OODSplit,
    RoundRecord,
    RunInfo,
    ShiftRequest,
)
from vecaf_bench.results import CHECKPOINT, CONFIG, EVENTS, SELECTED, SUMMARY

__all__ = [
    "ENGINE_FILES",
    "LIFE_CYCLE_HOOKS",
    "check_backbone",
    "check_backbone_attributes",
    "check_backbone_classifier",
    "check_backbone_deterministic",
    "check_backbone_embed",
    "check_backbone_forward",
    "check_dataset",
    "check_dataset_fingerprints",
    "check_dataset_images",
    "check_dataset_labels",
    "check_dataset_splits",
    "check_shift",
    "check_shift_splits",
    "check_text_encoder",
    "check_text_encoder_attributes",
    "check_text_encoder_batch_invariant",
    "check_text_encoder_deterministic",
    "check_text_encoder_empty",
    "check_text_encoder_output",
    "check_tracker",
    "check_tracker_hooks",
    "check_tracker_life_cycle",
    "check_tracker_resume",
    "normalised_batch",
]

Factory = Callable[..., Any]

#: The files of a run folder that the engine alone writes: a tracker must leave them alone.
ENGINE_FILES: tuple[str, ...] = (SUMMARY, EVENTS, SELECTED, CONFIG, CHECKPOINT)
#: The life-cycle hooks a tracker may implement.
LIFE_CYCLE_HOOKS: tuple[str, ...] = (
    "vecaf_bench_run_start",
    "vecaf_bench_round_end",
    "vecaf_bench_evaluate",
    "vecaf_bench_run_end",
)


def _fail(kind: str, name: str, check: str, what: str) -> AssertionError:
    return AssertionError(f"{kind} '{name}' failed check '{check}': {what}")


def _factory_name(factory: Factory) -> str:
    return getattr(factory, "__name__", None) or type(factory).__name__


def _nonempty_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


# -- backbones -------------------------------------------------------------------------------------
def _build_backbone(factory: Factory, model_name: str, weights: str, name: str, check: str) -> Any:
    try:
        return factory(model_name, weights=weights)
    except Exception as e:
        raise _fail(
            "backbone", name, check, f"factory({model_name!r}, weights={weights!r}) raised {type(e).__name__}: {e}"
        ) from e


def _create_model(backbone: Any, num_classes: int, name: str, check: str, drop_path: float = 0.0) -> nn.Module:
    try:
        model = backbone.create_model(num_classes, drop_path=drop_path)
    except Exception as e:
        raise _fail(
            "backbone", name, check,
            f"create_model({num_classes}, drop_path={drop_path}) raised {type(e).__name__}: {e}",
        ) from e  # fmt: skip
    if not isinstance(model, nn.Module):
        raise _fail("backbone", name, check, f"create_model() returned a {type(model).__name__}, not a torch nn.Module")
    return model


def normalised_batch(data_config: Mapping[str, Any], n: int = 2, image_size: int = 32, seed: int = 0) -> torch.Tensor:
    """(n, 3, image_size, image_size) float32: uniform [0, 1] pixels normalised with the
    backbone's mean and std, as the engine's eval transform hands them to the model."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 3, image_size, image_size), generator=g)
    mean = torch.tensor([float(v) for v in data_config.get("mean", (0.5,) * 3)]).view(1, -1, 1, 1)
    std = torch.tensor([float(v) for v in data_config.get("std", (0.5,) * 3)]).view(1, -1, 1, 1)
    return (x - mean) / std


def _finite_2d(kind: str, name: str, check: str, what: str, t: Any, rows: int, cols: int | None) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise _fail(kind, name, check, f"{what} returned a {type(t).__name__}, not a torch.Tensor")
    if t.dim() != 2 or t.shape[0] != rows or (cols is not None and t.shape[1] != cols):
        want = f"({rows}, {cols if cols is not None else 'D'})"
        raise _fail(kind, name, check, f"{what} has shape {tuple(t.shape)}; expected {want}")
    if not torch.isfinite(t).all():
        raise _fail(kind, name, check, f"{what} holds NaN or infinite values")
    return t


def check_backbone_attributes(
    factory: Factory, model_name: str, weights: str = "default", *, name: str | None = None
) -> None:
    """`name` and `fingerprint` are non-empty strings, the fingerprint is the same for two
    constructions (it keys the feature cache), and `data_config` has input_size, mean and std."""
    name = name or model_name
    check = "attributes"
    first = _build_backbone(factory, model_name, weights, name, check)
    for attr in ("name", "fingerprint"):
        if not _nonempty_str(getattr(first, attr, None)):
            raise _fail(
                "backbone", name, check, f"`{attr}` must be a non-empty string, got {getattr(first, attr, None)!r}"
            )
    second = _build_backbone(factory, model_name, weights, name, check)
    if second.fingerprint != first.fingerprint:
        raise _fail(
            "backbone", name, "fingerprint stable",
            f"two constructions gave the fingerprints {first.fingerprint!r} and {second.fingerprint!r}; "
            "it must change only when the weights do (it keys the feature cache)",
        )  # fmt: skip
    cfg = getattr(first, "data_config", None)
    if not isinstance(cfg, Mapping):
        raise _fail("backbone", name, "data config", f"`data_config` must be a dict, got {type(cfg).__name__}")
    missing = [k for k in ("input_size", "mean", "std") if k not in cfg]
    if missing:
        raise _fail("backbone", name, "data config", f"`data_config` lacks {missing} (it has {sorted(cfg)})")
    size = cfg["input_size"]
    if not (isinstance(size, Sequence) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)):
        raise _fail("backbone", name, "data config", f"input_size must be (3, H, W) positive ints, got {size!r}")
    for key in ("mean", "std"):
        v = cfg[key]
        if not (isinstance(v, Sequence) and len(v) == 3 and all(isinstance(c, (int, float)) for c in v)):
            raise _fail("backbone", name, "data config", f"{key} must be 3 numbers (one per channel), got {v!r}")
    if any(float(s) <= 0 for s in cfg["std"]):
        raise _fail("backbone", name, "data config", f"std must be positive, got {cfg['std']!r}")


def _forward(backbone: Any, model: nn.Module, x: torch.Tensor, num_classes: int, name: str, what: str) -> None:
    model.eval()
    what = f"model(x) of create_model({num_classes}{what}) on a {tuple(x.shape)} batch"
    try:
        with torch.no_grad():
            y = model(x)
    except Exception as e:
        raise _fail("backbone", name, "forward", f"{what} raised {type(e).__name__}: {e}") from e
    _finite_2d("backbone", name, "forward", what, y, len(x), num_classes)


def _embed(backbone: Any, model: nn.Module, x: torch.Tensor, name: str) -> None:
    model.eval()
    try:
        with torch.no_grad():
            e = backbone.embed(model, x)
    except Exception as err:
        raise _fail("backbone", name, "embed", f"embed(model, x) raised {type(err).__name__}: {err}") from err
    _finite_2d("backbone", name, "embed", f"embed(model, x) on a {tuple(x.shape)} batch", e, len(x), None)


def _classifier(backbone: Any, model: nn.Module, x: torch.Tensor, num_classes: int, name: str, atol: float) -> None:
    check = "classifier"
    if not callable(getattr(backbone, "classifier", None)):
        raise _fail(
            "backbone", name, check,
            "it has no classifier(model) method (the head mapping embed()'s output to logits); "
            "without it every pool_outputs() costs a second forward. For a timm model: "
            "`def classifier(self, model): return model.get_classifier()`",
        )  # fmt: skip
    model.eval()
    try:
        with torch.no_grad():
            head = backbone.classifier(model)
            logits = model(x)
            via_head = head(backbone.embed(model, x))
    except Exception as e:
        what = f"classifier(model)(embed(model, x)) raised {type(e).__name__}: {e}"
        raise _fail("backbone", name, check, what) from e
    _finite_2d("backbone", name, check, "classifier(model)(embed(model, x))", via_head, len(x), num_classes)
    diff = float((via_head.float() - logits.float()).abs().max())
    if not diff <= atol:
        raise _fail(
            "backbone", name, check,
            f"classifier(model)(embed(model, x)) differs from model(x) by up to {diff:.3g} (atol {atol}) in eval "
            "mode; the head must map exactly the embedding embed() returns to the model's logits",
        )  # fmt: skip


def _deterministic(backbone: Any, x: torch.Tensor, num_classes: int, name: str) -> nn.Module:
    """Two models under one seed; returns the first (the other checks run on it)."""
    check = "deterministic"
    models, outputs = [], []
    with torch.random.fork_rng(devices=[]):
        for _ in range(2):
            torch.manual_seed(1234)
            model = _create_model(backbone, num_classes, name, "create_model").eval()
            models.append(model)
            try:
                with torch.no_grad():
                    outputs.append(model(x))
            except Exception as e:
                raise _fail("backbone", name, "forward", f"model(x) raised {type(e).__name__}: {e}") from e
    a, b = (m.state_dict() for m in models)
    if set(a) != set(b):
        raise _fail("backbone", name, check, "two create_model() calls gave models with different state_dict keys")
    differ = [k for k in a if a[k].shape != b[k].shape or not torch.equal(a[k], b[k])]
    if differ:
        raise _fail(
            "backbone", name, check,
            f"two create_model({num_classes}) calls under torch.manual_seed(1234) differ in {len(differ)} tensors "
            f"({', '.join(differ[:3])}); draw the head's initialisation from torch's global generator",
        )  # fmt: skip
    if not (isinstance(outputs[0], torch.Tensor) and isinstance(outputs[1], torch.Tensor)):
        return models[0]  # the forward check names what the model returned
    if outputs[0].shape != outputs[1].shape or not torch.equal(outputs[0], outputs[1]):
        raise _fail("backbone", name, check, "two identically seeded models gave different outputs on the same batch")
    return models[0]


def check_backbone_forward(
    factory: Factory,
    model_name: str,
    weights: str = "default",
    *,
    num_classes: int = 3,
    image_size: int = 32,
    name: str | None = None,
) -> None:
    """create_model gives an nn.Module whose forward on a normalised (2, 3, H, W) batch gives
    finite (2, num_classes) logits, with and without drop_path."""
    name = name or model_name
    backbone = _build_backbone(factory, model_name, weights, name, "forward")
    x = normalised_batch(backbone.data_config, image_size=image_size)
    for drop_path in (0.0, 0.1):
        model = _create_model(backbone, num_classes, name, "create_model", drop_path=drop_path)
        _forward(backbone, model, x, num_classes, name, f", drop_path={drop_path}")


def check_backbone_embed(
    factory: Factory,
    model_name: str,
    weights: str = "default",
    *,
    num_classes: int = 3,
    image_size: int = 32,
    name: str | None = None,
) -> None:
    """embed(model, x) gives finite (2, D) pooled embeddings."""
    name = name or model_name
    backbone = _build_backbone(factory, model_name, weights, name, "embed")
    model = _create_model(backbone, num_classes, name, "create_model")
    _embed(backbone, model, normalised_batch(backbone.data_config, image_size=image_size), name)


def check_backbone_classifier(
    factory: Factory,
    model_name: str,
    weights: str = "default",
    *,
    num_classes: int = 3,
    image_size: int = 32,
    name: str | None = None,
    atol: float = 1e-4,
) -> None:
    """classifier(model)(embed(model, x)) equals model(x) in eval mode (atol 1e-4): the engine
    computes a selector's logits and embeddings from one forward."""
    name = name or model_name
    backbone = _build_backbone(factory, model_name, weights, name, "classifier")
    x = normalised_batch(backbone.data_config, image_size=image_size)
    if callable(getattr(backbone, "classifier", None)):
        model = _create_model(backbone, num_classes, name, "create_model")
    else:
        model = nn.Identity()  # the check fails before using it
    _classifier(backbone, model, x, num_classes, name, atol)


def check_backbone_deterministic(
    factory: Factory,
    model_name: str,
    weights: str = "default",
    *,
    num_classes: int = 3,
    image_size: int = 32,
    name: str | None = None,
) -> None:
    """Under the same torch.manual_seed, create_model gives the same parameters and outputs
    (the fresh head included): runs are reproducible from their seed. Torch's global random
    state is left as it was."""
    name = name or model_name
    backbone = _build_backbone(factory, model_name, weights, name, "deterministic")
    _deterministic(backbone, normalised_batch(backbone.data_config, image_size=image_size), num_classes, name)


def check_backbone(
    factory: Factory,
    model_name: str,
    weights: str = "default",
    *,
    num_classes: int = 3,
    image_size: int = 32,
    name: str | None = None,
    require_classifier: bool = True,
) -> None:
    """Every backbone check on `factory(model_name, weights=weights)`, building three models in
    all. `name` is used in messages (default: `model_name`); `require_classifier=False` skips
    the `classifier` check for a backbone that accepts the second forward its absence costs."""
    name = name or model_name
    check_backbone_attributes(factory, model_name, weights, name=name)
    backbone = _build_backbone(factory, model_name, weights, name, "attributes")
    x = normalised_batch(backbone.data_config, image_size=image_size)
    model = _deterministic(backbone, x, num_classes, name)
    _forward(backbone, model, x, num_classes, name, "")
    _forward(backbone, _create_model(backbone, num_classes, name, "create_model", 0.1), x, num_classes, name,
             ", drop_path=0.1")  # fmt: skip
    _embed(backbone, model, x, name)
    if require_classifier:
        _classifier(backbone, model, x, num_classes, name, atol=1e-4)


# -- datasets --------------------------------------------------------------------------------------
def _load_dataset(factory: Factory, request: DatasetRequest, name: str) -> DatasetSplits:
    try:
        splits = factory(request)
    except Exception as e:
        raise _fail("dataset", name, "loads", f"factory({request!r}) raised {type(e).__name__}: {e}") from e
    if not isinstance(splits, DatasetSplits):
        raise _fail("dataset", name, "loads", f"the factory returned a {type(splits).__name__}, not a DatasetSplits")
    return splits


def _sources(splits: DatasetSplits) -> list[tuple[str, ImageSource]]:
    return [("pool", splits.pool), ("test", splits.test)]


def check_dataset_splits(splits: DatasetSplits, *, name: str | None = None) -> None:
    """Pool and test are non-empty image sources; the class keys are non-empty, unique strings;
    class_names, when given, has one name per class."""
    name = name or splits.name
    check = "splits"
    for which, src in _sources(splits):
        for attr in ("labels", "fingerprint", "image", "__len__"):
            if not hasattr(src, attr):
                raise _fail("dataset", name, check, f"the {which} split ({type(src).__name__}) has no `{attr}`")
        if len(src) == 0:
            raise _fail("dataset", name, check, f"the {which} split is empty")
    classes = splits.classes
    if not isinstance(classes, (list, tuple)) or not classes:
        raise _fail("dataset", name, "classes", f"`classes` must be a non-empty list of keys, got {classes!r}")
    bad = [c for c in classes if not _nonempty_str(c)]
    if bad:
        raise _fail("dataset", name, "classes", f"class keys must be non-empty strings; got {bad[:3]!r}")
    dupes = sorted(c for c, k in Counter(classes).items() if k > 1)
    if dupes:
        raise _fail("dataset", name, "classes", f"class keys must be unique; repeated: {dupes[:5]}")
    if splits.class_names is not None and len(splits.class_names) != len(classes):
        raise _fail(
            "dataset", name, "classes",
            f"class_names has {len(splits.class_names)} names for {len(classes)} classes",
        )  # fmt: skip


def check_dataset_labels(splits: DatasetSplits, *, name: str | None = None) -> None:
    """Every split's labels are a 1-D integer array, one per image, in [0, num_classes)."""
    name = name or splits.name
    check = "labels"
    c = len(splits.classes)
    for which, src in _sources(splits):
        labels = np.asarray(src.labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise _fail(
                "dataset", name, check,
                f"the {which} labels must be a 1-D integer array, got dtype {labels.dtype} shape {labels.shape}",
            )  # fmt: skip
        if len(labels) != len(src):
            raise _fail("dataset", name, check, f"the {which} split has {len(src)} images but {len(labels)} labels")
        out = np.flatnonzero((labels < 0) | (labels >= c))
        if len(out):
            i = int(out[0])
            raise _fail(
                "dataset", name, check,
                f"{len(out)} {which} label(s) outside [0, {c}) (the {c} classes), e.g. label {int(labels[i])} "
                f"at index {i}",
            )  # fmt: skip


def check_dataset_images(splits: DatasetSplits, *, name: str | None = None, count: int = 3) -> None:
    """`image(i)` gives a non-empty RGB PIL image for the first, a middle and the last index of
    each split."""
    name = name or splits.name
    check = "images"
    for which, src in _sources(splits):
        n = len(src)
        for i in sorted({int(v) for v in np.linspace(0, n - 1, num=min(count, n))}):
            try:
                im = src.image(i)
            except Exception as e:
                raise _fail("dataset", name, check, f"{which}.image({i}) raised {type(e).__name__}: {e}") from e
            if not isinstance(im, Image.Image):
                raise _fail(
                    "dataset", name, check, f"{which}.image({i}) returned a {type(im).__name__}, not a PIL image"
                )
            if im.mode != "RGB" or min(im.size) < 1:
                raise _fail(
                    "dataset", name, check,
                    f"{which}.image({i}) is a {im.mode} image of size {im.size}; it must be RGB (convert('RGB'))",
                )  # fmt: skip


def check_dataset_fingerprints(
    splits: DatasetSplits, again: DatasetSplits | None = None, *, name: str | None = None
) -> None:
    """Each split's fingerprint is a non-empty string, pool and test differ, and a second load
    (`again`) gives the same ones: fingerprints key the feature cache."""
    name = name or splits.name
    check = "fingerprints"
    for which, src in _sources(splits):
        if not _nonempty_str(src.fingerprint):
            raise _fail(
                "dataset", name, check, f"the {which} fingerprint must be a non-empty string, got {src.fingerprint!r}"
            )
    if splits.pool.fingerprint == splits.test.fingerprint:
        raise _fail(
            "dataset", name, check,
            f"pool and test have the same fingerprint {splits.pool.fingerprint!r}; their cached features would clash",
        )  # fmt: skip
    if again is not None:
        for (which, a), (_, b) in zip(_sources(splits), _sources(again), strict=True):
            if a.fingerprint != b.fingerprint:
                raise _fail(
                    "dataset", name, "fingerprint stable",
                    f"two loads gave the {which} fingerprints {a.fingerprint!r} and {b.fingerprint!r}",
                )  # fmt: skip
            if len(a) != len(b) or not np.array_equal(np.asarray(a.labels), np.asarray(b.labels)):
                raise _fail("dataset", name, "fingerprint stable", f"two loads gave different {which} splits")


def check_dataset(factory: Factory, request: DatasetRequest, *, name: str | None = None) -> None:
    """Every dataset check on `factory(request)`, loaded twice (fingerprint stability)."""
    name = name or request.name
    splits = _load_dataset(factory, request, name)
    check_dataset_splits(splits, name=name)
    check_dataset_labels(splits, name=name)
    check_dataset_images(splits, name=name)
    check_dataset_fingerprints(splits, _load_dataset(factory, request, name), name=name)


# -- text encoders ---------------------------------------------------------------------------------
TEXTS = [
    "a photo of a cat.",
    "a photo of a dog.",
    "a blurry sketch of a small red bicycle leaning against an old brick wall.",
    "zero",
    "a photo of a cat.",
]


def _encode(encoder: Any, name: str, check: str, texts: list[str], batch_size: int, device: Any) -> np.ndarray:
    what = f"encode({len(texts)} texts, batch_size={batch_size})"
    try:
        out = encoder.encode(list(texts), batch_size, device)
    except Exception as e:
        raise _fail("text encoder", name, check, f"{what} raised {type(e).__name__}: {e}") from e
    if not isinstance(out, np.ndarray):
        raise _fail("text encoder", name, check, f"{what} returned a {type(out).__name__}, not a numpy array")
    dim = getattr(encoder, "dim", None)
    if out.shape != (len(texts), dim):
        raise _fail("text encoder", name, check, f"{what} has shape {out.shape}; expected ({len(texts)}, {dim})")
    return out


def _text_name(encoder: Any, name: str | None) -> str:
    return name or str(getattr(encoder, "name", "") or type(encoder).__name__)


def check_text_encoder_attributes(encoder: Any, *, name: str | None = None) -> None:
    """`name` and `fingerprint` are non-empty strings, `dim` a positive int."""
    name = _text_name(encoder, name)
    for attr in ("name", "fingerprint"):
        if not _nonempty_str(getattr(encoder, attr, None)):
            raise _fail(
                "text encoder", name, "attributes",
                f"`{attr}` must be a non-empty string, got {getattr(encoder, attr, None)!r}",
            )  # fmt: skip
    dim = getattr(encoder, "dim", None)
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim <= 0:
        raise _fail("text encoder", name, "attributes", f"`dim` must be a positive int, got {dim!r}")
    if not callable(getattr(encoder, "encode", None)):
        raise _fail("text encoder", name, "attributes", "it has no encode(texts, batch_size, device) method")


def check_text_encoder_output(encoder: Any, *, name: str | None = None, device: Any = "cpu") -> None:
    """encode gives (n, dim) float32, finite, every row of unit L2 norm."""
    name = _text_name(encoder, name)
    check = "output"
    out = _encode(encoder, name, check, TEXTS, 8, device)
    if out.dtype != np.float32:
        raise _fail("text encoder", name, check, f"encode() returned dtype {out.dtype}; it must be float32")
    if not np.isfinite(out).all():
        raise _fail("text encoder", name, check, "encode() returned NaN or infinite values")
    norms = np.linalg.norm(out.astype(np.float64), axis=1)
    off = np.flatnonzero(np.abs(norms - 1.0) > 1e-3)
    if len(off):
        raise _fail(
            "text encoder", name, "unit norm",
            f"rows must be L2-normalised; row {int(off[0])} ({TEXTS[int(off[0])]!r}) has norm {norms[off[0]]:.4g}",
        )  # fmt: skip


def check_text_encoder_deterministic(
    encoder: Any, *, name: str | None = None, device: Any = "cpu", atol: float = 1e-5
) -> None:
    """The same texts encoded twice give the same rows."""
    name = _text_name(encoder, name)
    a = _encode(encoder, name, "deterministic", TEXTS, 8, device)
    b = _encode(encoder, name, "deterministic", TEXTS, 8, device)
    if not np.allclose(a, b, atol=atol, rtol=0):
        diff = float(np.abs(a.astype(np.float64) - b).max())
        raise _fail(
            "text encoder", name, "deterministic", f"two encodings of the same texts differ by up to {diff:.3g}"
        )


def check_text_encoder_batch_invariant(
    encoder: Any, *, name: str | None = None, device: Any = "cpu", atol: float = 1e-4
) -> None:
    """A text's row does not depend on its batch: not on the batch size, its position in the
    batch or its batch mates (padding must be masked out)."""
    name = _text_name(encoder, name)
    check = "batch invariant"
    ref = _encode(encoder, name, check, TEXTS, len(TEXTS), device)
    order = list(range(len(TEXTS)))[::-1]
    variants = [
        ("batch_size=1", _encode(encoder, name, check, TEXTS, 1, device), list(range(len(TEXTS)))),
        ("batch_size=2", _encode(encoder, name, check, TEXTS, 2, device), list(range(len(TEXTS)))),
        ("reversed order", _encode(encoder, name, check, [TEXTS[i] for i in order], 3, device), order),
    ]
    for what, out, idx in variants:
        for row, i in enumerate(idx):
            diff = float(np.abs(out[row].astype(np.float64) - ref[i]).max())
            if not diff <= atol:
                raise _fail(
                    "text encoder", name, check,
                    f"{TEXTS[i]!r} encoded with {what} differs from the same text in one batch by up to "
                    f"{diff:.3g} (atol {atol})",
                )  # fmt: skip
    dup = float(np.abs(ref[0].astype(np.float64) - ref[4]).max())
    if not dup <= atol:
        raise _fail("text encoder", name, check, f"the same text twice in one batch gave rows {dup:.3g} apart")


def check_text_encoder_empty(encoder: Any, *, name: str | None = None, device: Any = "cpu") -> None:
    """encode([]) gives a (0, dim) array."""
    name = _text_name(encoder, name)
    _encode(encoder, name, "empty", [], 8, device)


def check_text_encoder(factory: Factory, *args: Any, name: str | None = None, device: Any = "cpu") -> None:
    """Every text-encoder check on `factory(*args)`; a second construction must have the same
    fingerprint (it keys the text cache)."""
    label = name or (":".join([_factory_name(factory), *map(str, args)]))

    def build() -> Any:
        try:
            return factory(*args)
        except Exception as e:
            raise _fail("text encoder", label, "builds", f"factory{args!r} raised {type(e).__name__}: {e}") from e

    encoder = build()
    name = _text_name(encoder, name)
    check_text_encoder_attributes(encoder, name=name)
    second = build()
    if getattr(second, "fingerprint", None) != encoder.fingerprint:
        raise _fail(
            "text encoder", name, "fingerprint stable",
            f"two constructions gave {encoder.fingerprint!r} and {getattr(second, 'fingerprint', None)!r}",
        )  # fmt: skip
    check_text_encoder_output(encoder, name=name, device=device)
    check_text_encoder_deterministic(encoder, name=name, device=device)
    check_text_encoder_batch_invariant(encoder, name=name, device=device)
    check_text_encoder_empty(encoder, name=name, device=device)


# -- shifts ----------------------------------------------------------------------------------------
def check_shift_splits(splits: Any, request: ShiftRequest, *, name: str = "shift") -> None:
    """A non-empty list of OODSplit with unique names; each split is non-empty, its labels are
    in the run's label space, its mask is None or a (num_classes,) bool array allowing every
    label's class, its templates hold exactly one "{}" and a few of its images are RGB."""
    c = request.splits.num_classes
    if isinstance(splits, (str, bytes)) or not isinstance(splits, Sequence):
        raise _fail("shift", name, "splits", f"the factory must return a list of OODSplit, got {type(splits).__name__}")
    if not splits:
        raise _fail("shift", name, "splits", f"the factory returned no split for spec {request.spec!r}")
    names: list[str] = []
    for s in splits:
        if not isinstance(s, OODSplit):
            raise _fail("shift", name, "splits", f"the factory returned a {type(s).__name__}, not an OODSplit")
        if not _nonempty_str(s.name):
            raise _fail("shift", name, "names", f"a split's name must be a non-empty string, got {s.name!r}")
        names.append(s.name)
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail("shift", name, "names", f"split names must be unique in the run; repeated: {dupes}")
    for s in splits:
        where = f"split '{s.name}'"
        n = len(s.images)
        if n == 0:
            raise _fail("shift", name, "non-empty", f"{where} holds no image")
        labels = np.asarray(s.images.labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) != n:
            raise _fail(
                "shift", name, "labels",
                f"{where}: labels must be {n} integers, got dtype {labels.dtype} shape {labels.shape}",
            )  # fmt: skip
        out = np.flatnonzero((labels < 0) | (labels >= c))
        if len(out):
            raise _fail(
                "shift", name, "labels",
                f"{where}: {len(out)} label(s) outside the run's label space [0, {c}), e.g. {int(labels[out[0]])}",
            )  # fmt: skip
        if s.mask is not None:
            mask = s.mask
            if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_ or mask.shape != (c,):
                got = f"{type(mask).__name__} {getattr(mask, 'dtype', '')} {getattr(mask, 'shape', '')}"
                raise _fail("shift", name, "mask", f"{where}: mask must be None or a ({c},) bool array, got {got}")
            barred = np.unique(labels[~mask[labels]])
            if len(barred):
                raise _fail(
                    "shift", name, "mask",
                    f"{where}: the mask bars class(es) {barred[:5].tolist()} that its labels hold",
                )  # fmt: skip
        for t in s.templates:
            ok = isinstance(t, str) and t.count("{}") == 1
            if ok:
                try:
                    t.format("cat")
                except (IndexError, KeyError, ValueError):
                    ok = False
            if not ok:
                raise _fail("shift", name, "templates", f"{where}: template {t!r} must hold exactly one '{{}}'")
        for d in s.domains:
            if not _nonempty_str(d):
                raise _fail("shift", name, "domains", f"{where}: domain names must be non-empty strings, got {d!r}")
        for i in sorted({0, n - 1}):
            try:
                im = s.images.image(i)
            except Exception as e:
                raise _fail("shift", name, "images", f"{where}: image({i}) raised {type(e).__name__}: {e}") from e
            if not isinstance(im, Image.Image) or im.mode != "RGB":
                got = getattr(im, "mode", type(im).__name__)
                raise _fail("shift", name, "images", f"{where}: image({i}) must be an RGB PIL image, got {got}")


def check_shift(factory: Factory, request: ShiftRequest, *, name: str | None = None) -> None:
    """Every shift check on `factory(request)`."""
    name = name or _factory_name(factory)
    try:
        splits = factory(request)
    except Exception as e:
        raise _fail("shift", name, "splits", f"factory(spec={request.spec!r}) raised {type(e).__name__}: {e}") from e
    check_shift_splits(splits, request, name=name)


# -- trackers --------------------------------------------------------------------------------------
def _tracker_name(factory: Factory, name: str | None) -> str:
    return name or _factory_name(factory)


def _build_tracker(factory: Factory, config: Any, run_dir: Path, name: str, check: str) -> Any:
    try:
        return factory(config, run_dir)
    except Exception as e:
        raise _fail("tracker", name, check, f"factory(config, run_dir) raised {type(e).__name__}: {e}") from e


def _manager(tracker: Any, name: str) -> pluggy.PluginManager:
    """A plugin manager with vecaf-bench's hook specs and the tracker registered, as the engine
    makes one; a misspelled or mis-signed hook is a failure of check 'hooks'."""
    pm = pluggy.PluginManager(PROJECT)
    pm.add_hookspecs(hookspecs)
    try:
        pm.register(tracker, name=f"tracker:{name}")
        pm.check_pending()
    except pluggy.PluginValidationError as e:
        raise _fail("tracker", name, "hooks", f"{e} (the hooks are listed in vecaf_bench.hookspecs)") from e
    return pm


def check_tracker_hooks(factory: Factory, config: Any, run_dir: Path | str, *, name: str | None = None) -> None:
    """The tracker registers with pluggy against `vecaf_bench.hookspecs` (no unknown hook names,
    no unknown parameters), implements at least one life-cycle hook, and has no
    `vecaf_bench_*` method that is not a hook implementation (a missing `@hookimpl`)."""
    name = _tracker_name(factory, name)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tracker = _build_tracker(factory, config, run_dir, name, "hooks")
    pm = _manager(tracker, name)
    try:
        impls = {
            hook
            for hook in LIFE_CYCLE_HOOKS
            if any(i.plugin is tracker for i in getattr(pm.hook, hook).get_hookimpls())
        }
        registered = {h.name for h in (pm.get_hookcallers(tracker) or [])}
    finally:
        pm.unregister(tracker)
    loose = sorted(a for a in dir(tracker) if a.startswith("vecaf_bench_") and a not in registered)
    if loose:
        raise _fail(
            "tracker", name, "hooks",
            f"{', '.join(loose)} {'is' if len(loose) == 1 else 'are'} not registered as hook implementation(s); "
            "decorate them with @vecaf_bench.api.hookimpl",
        )  # fmt: skip
    if not impls:
        raise _fail(
            "tracker", name, "hooks",
            f"it implements none of the life-cycle hooks ({', '.join(LIFE_CYCLE_HOOKS)}); decorate them with "
            "@vecaf_bench.api.hookimpl",
        )  # fmt: skip


def _stat(path: Path) -> tuple[int, int, str] | None:
    if not path.is_file():
        return (0, 0, "not a file") if path.exists() else None
    st = path.stat()
    digest = hashlib.sha1(path.read_bytes()).hexdigest() if st.st_size < (1 << 24) else ""
    return st.st_size, st.st_mtime_ns, digest


def _snapshot(run_dir: Path) -> dict[str, tuple[int, int, str] | None]:
    return {f: _stat(run_dir / f) for f in ENGINE_FILES}


FakeRun = tuple[RunInfo, RoundRecord, list[dict[str, float]], dict[str, Any]]


def _fake_run(config: Any, run_dir: Path, resumed: bool) -> FakeRun:
    """What the engine hands the hooks in a tiny run: 40 pool images, 3 classes, 6 labels, 4 steps."""
    run = RunInfo(
        config=config,
        run_id=run_dir.name or "run",
        run_dir=run_dir,
        pool_size=40,
        test_size=12,
        num_classes=3,
        label_budget=6,
        device="cpu",
        uses=["model"],
        resumed=resumed,
    )
    record = RoundRecord(
        round=0, picked=6, selected_total=6, steps=4, selection_seconds=0.01, selection_forward_batches=1,
        selector="random", stats={"score_mean": 0.5},
    )  # fmt: skip
    metrics = [
        {"top1": 50.0, "top5": 100.0, "loss": 1.0, "train_loss": 1.1, "ood/toy/top1": 40.0, "ood/toy/top5": 100.0},
        {"top1": 75.0, "top5": 100.0, "loss": 0.7, "train_loss": 0.8, "ood/toy/top1": 60.0, "ood/toy/top5": 100.0},
    ]
    curve = [
        EvalPoint(step=2 * i, top1=m["top1"], top5=m["top5"], loss=m["loss"], train_loss=m["train_loss"]).to_dict()
        for i, m in enumerate(metrics, start=1)
    ]
    summary: dict[str, Any] = {
        "run_id": run.run_id, "status": "finished", "selector": "random", "uses": ["model"], "dataset": "toy",
        "seed": 0, "label_budget": 6, "batch_budget": 4, "batch_size": 2, "steps": 4, "pool_size": 40,
        "test_size": 12, "num_classes": 3, "test_top1": 75.0, "test_top5": 100.0, "curve": curve,
        "rounds": [record.to_dict()], "selection_seconds": 0.01, "selection_forward_batches": 1,
        "ood": {"toy": {"top1": 60.0, "top5": 100.0, "group": None}}, "device": "cpu", "wall_seconds": 1.0,
    }  # fmt: skip
    return run, record, metrics, summary


def check_tracker_life_cycle(
    factory: Factory, config: Any, run_dir: Path | str, *, name: str | None = None, resumed: bool = False
) -> None:
    """A fresh tracker, registered with pluggy, goes through a fake run (run_start, round_end,
    two evaluations, run_end with a finished summary) without raising and without changing
    the records it is handed; it writes none of the engine's files (`ENGINE_FILES`) into
    `run_dir`. With `resumed`, `run.resumed` is True (a run continued from its checkpoint)."""
    name = _tracker_name(factory, name)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    check = "resumed run" if resumed else "life cycle"
    before = _snapshot(run_dir)
    tracker = _build_tracker(factory, config, run_dir, name, check)
    pm = _manager(tracker, name)
    run, record, metrics, summary = _fake_run(config, run_dir, resumed)
    kept = (copy.deepcopy(record.to_dict()), copy.deepcopy(metrics), copy.deepcopy(summary))
    calls: list[tuple[str, dict[str, Any]]] = [
        ("vecaf_bench_run_start", {"run": run}),
        ("vecaf_bench_round_end", {"run": run, "record": record}),
        ("vecaf_bench_evaluate", {"run": run, "step": 2, "metrics": metrics[0]}),
        ("vecaf_bench_evaluate", {"run": run, "step": 4, "metrics": metrics[1]}),
        ("vecaf_bench_run_end", {"run": run, "summary": summary}),
    ]
    try:
        for hook, kwargs in calls:
            try:
                getattr(pm.hook, hook)(**kwargs)
            except Exception as e:
                step = f" (step {kwargs['step']})" if "step" in kwargs else ""
                raise _fail("tracker", name, check, f"{hook}{step} raised {type(e).__name__}: {e}") from e
    finally:
        pm.unregister(tracker)
    if (record.to_dict(), metrics, summary) != kept:
        raise _fail("tracker", name, check, "it modified a record, the metrics or the summary it was handed")
    after = _snapshot(run_dir)
    touched = [f for f in ENGINE_FILES if after[f] != before[f]]
    if touched:
        raise _fail(
            "tracker", name, "observes only",
            f"it wrote {', '.join(touched)} in the run folder; the engine writes the run's results "
            f"({', '.join(ENGINE_FILES)}), trackers only observe (write under a folder or file of your own)",
        )  # fmt: skip


def check_tracker_resume(factory: Factory, config: Any, run_dir: Path | str, *, name: str | None = None) -> None:
    """A fake run, then the same run resumed (a fresh tracker, `run.resumed` True) in the same
    run folder, as after an interruption."""
    check_tracker_life_cycle(factory, config, run_dir, name=name, resumed=False)
    check_tracker_life_cycle(factory, config, run_dir, name=name, resumed=True)


def check_tracker(factory: Factory, config: Any, run_dir: Path | str, *, name: str | None = None) -> None:
    """Every tracker check on `factory(config, run_dir)`: hooks, a fake run and its resumption."""
    check_tracker_hooks(factory, config, run_dir, name=name)
    check_tracker_resume(factory, config, run_dir, name=name)
