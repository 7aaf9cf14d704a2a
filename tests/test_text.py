"""Text encoders and annotations: real semantics, prompts, domains, captions, cache, plugins."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vecaf_bench.errors import PluginError, UserError
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench.text import (
    DEFAULT_TEMPLATES,
    TextEncoder,
    average_prompts,
    class_embeddings,
    class_prompts,
    domain_templates,
    load_captions,
    readable_class_names,
    resolve_templates,
    text_features,
)
from vecaf_bench_plugins.text_encoders.minilm import MiniLM
from vecaf_bench_plugins.text_encoders.open_clip_text import OpenClipText

CPU = torch.device("cpu")
TINY_CLIP = "ViT-S-32-alt"  # the smallest open_clip config (256-d, 10-layer text tower)


class Counting:
    """Wraps an encoder and counts the texts it is asked to embed."""

    def __init__(self, inner: TextEncoder) -> None:
        self.inner, self.calls, self.texts = inner, 0, 0
        self.name, self.fingerprint, self.dim = inner.name, inner.fingerprint, inner.dim

    def encode(self, texts, batch_size, device):
        self.calls += 1
        self.texts += len(texts)
        return self.inner.encode(texts, batch_size, device)


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    return MiniLM()


def _unit(x: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(x, axis=-1), 1.0, atol=1e-5))


def test_text_encoders_are_plugins(cli):
    host = PluginHost()
    assert {"minilm", "open_clip"} <= set(host.registries["text_encoders"].names())
    assert host.text_encoders().get("minilm").source == "vecaf-bench"
    with pytest.raises(UserError, match="unknown text encoder 'minlm'.*Did you mean 'minilm'"):
        host.text_encoders().get("minlm")
    out = cli("list", "text_encoders")
    assert out.exit_code == 0 and "minilm" in out.output and "open_clip" in out.output


def test_minilm_is_offline_normalised_and_has_real_semantics(minilm):
    assert isinstance(minilm, TextEncoder) and minilm.dim == 384
    assert minilm.fingerprint.startswith("minilm:") and minilm.fingerprint == MiniLM().fingerprint
    e = minilm.encode(["a photo of a cat", "a photo of a dog", "a photo of a truck"], 2, CPU)
    assert e.shape == (3, 384) and e.dtype == np.float32 and _unit(e)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.05
    # mean pooling over the attention mask: padding (a longer text in the batch) changes nothing
    alone = minilm.encode(["a photo of a cat"], 8, "cpu")
    padded = minilm.encode(["a photo of a cat", "a much longer sentence that forces padding of the first one"], 8, CPU)
    assert np.allclose(alone[0], padded[0], atol=1e-5)


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm.path), device="cpu")
    texts = ["a photo of a cat.", "an origami crane on a table", "x"]
    ref = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    assert np.allclose(minilm.encode(texts, 2, CPU), ref, atol=1e-5)


def test_minilm_bad_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not a sentence-transformers model folder"):
        MiniLM(str(tmp_path))


def test_templates_prompts_and_names():
    assert class_prompts(["cat", "dog"], ["a photo of a {}.", "art of the {}."]) == [
        ["a photo of a cat.", "art of the cat."], ["a photo of a dog.", "art of the dog."]]
    assert class_prompts(["cat"])[0][0] == "a photo of a cat." and len(class_prompts(["cat"])[0]) == len(
        DEFAULT_TEMPLATES)
    from open_clip import zero_shot_metadata as z  # the ImageNet templates are open_clip's, imported

    assert resolve_templates("openai") == list(z.OPENAI_IMAGENET_TEMPLATES)
    assert class_prompts(["goldfish"], "simple")[0] == [t("goldfish") for t in z.SIMPLE_IMAGENET_TEMPLATES]
    with pytest.raises(UserError, match="unknown template set 'opnai'.*openai"):
        resolve_templates("opnai")
    with pytest.raises(UserError, match="exactly one"):
        resolve_templates(["a photo"])
    assert readable_class_names(["n01440764", "n01443537"]) == ["tench", "goldfish"]
    assert readable_class_names(["golden_retriever", "7"]) == ["golden retriever", "7"]


def test_domain_templates():
    assert domain_templates("sketch")[0] == "a sketch of a {}."
    assert "a drawing of a {}." in domain_templates("Sketches")
    for d in ("painting", "cartoon", "art"):
        assert domain_templates(d) and all(t.count("{}") == 1 for t in domain_templates(d))
    assert domain_templates("claymation")[0] == "a claymation of a {}."
    with pytest.raises(UserError, match="empty"):
        domain_templates(" ")


def test_class_embeddings_average_templates(minilm):
    templates = ["a photo of a {}.", "a drawing of a {}.", "a {} in the wild."]
    got = class_embeddings(minilm, ["cat", "truck"], templates, device=CPU)
    each = minilm.encode([t.format(c) for c in ["cat", "truck"] for t in templates], 8, CPU).reshape(2, 3, -1)
    want = each.mean(1) / np.linalg.norm(each.mean(1), axis=1, keepdims=True)
    assert got.shape == (2, 384) and _unit(got) and np.allclose(got, want, atol=1e-5)
    single = class_embeddings(minilm, ["cat"], templates[:1], device=CPU)
    assert not np.allclose(single[0], got[0], atol=1e-3)  # more templates, a different average
    assert np.allclose(average_prompts(np.ones((4, 2)) * [[1, 0]], 2), [[1, 0], [1, 0]])


def test_text_features_prompts_domain_and_cache(minilm, tmp_path):
    enc = Counting(minilm)
    labels = np.array([0, 1, 1, 0, 2])
    classes = ["cat", "truck", "golden_retriever"]
    logs: list[str] = []
    a = text_features(enc, classes=classes, labels=labels, cache_root=tmp_path, device=CPU, log=logs.append)
    assert not a.cached and a.encoded == 3 * len(DEFAULT_TEMPLATES) and a.source == "class prompts"
    assert a.per_class.shape == (3, 384) and a.per_sample.shape == (5, 384) and _unit(a.per_class)
    assert np.array_equal(a.per_sample, a.per_class[labels]) and a.per_sample.dtype == np.float32
    assert np.allclose(a.per_class, class_embeddings(minilm, ["cat", "truck", "golden retriever"]), atol=1e-6)
    calls = enc.calls
    b = text_features(enc, classes=classes, labels=labels, cache_root=tmp_path, device=CPU, log=logs.append)
    assert b.cached and b.encoded == 0 and enc.calls == calls  # the model did not run
    assert np.array_equal(a.per_class, b.per_class) and np.array_equal(a.per_sample, b.per_sample)
    assert logs[0].startswith("text: encoded") and logs[1].startswith("text: reused cache")
    assert not b.shared_space  # minilm has no image tower
    # a named target domain: domain-conditioned prompts, a different embedding (and cache entry)
    sketch = text_features(enc, classes=classes, labels=labels, cache_root=tmp_path, domain="sketch", device=CPU)
    assert not sketch.cached and not np.allclose(sketch.per_class, a.per_class, atol=1e-3)
    assert np.allclose(sketch.per_class, class_embeddings(minilm, ["cat", "truck", "golden retriever"],
                                                          domain_templates("sketch")), atol=1e-6)
    with pytest.raises(UserError, match="labels run from 0 to 2 but the dataset names 2 classes"):
        text_features(enc, classes=classes[:2], labels=labels, cache_root=tmp_path)


def test_text_features_captions_cached(minilm, tmp_path):
    enc = Counting(minilm)
    labels = np.array([0, 1, 0])
    caps = ["a sleeping cat on a sofa", "a red truck on a road", "a sleeping cat on a sofa"]
    a = text_features(enc, classes=["cat", "truck"], labels=labels, captions=caps, cache_root=tmp_path)
    assert a.source == "captions" and a.per_sample.shape == (3, 384) and _unit(a.per_sample)
    assert np.array_equal(a.per_sample[0], a.per_sample[2])
    assert np.allclose(a.per_sample, minilm.encode(caps, 8, CPU), atol=1e-6)
    assert not np.allclose(a.per_sample, a.per_class[labels], atol=1e-3)
    calls = enc.calls
    b = text_features(enc, classes=["cat", "truck"], labels=labels, captions=caps, cache_root=tmp_path)
    assert b.cached and enc.calls == calls and np.array_equal(a.per_sample, b.per_sample)
    c = text_features(enc, classes=["cat", "truck"], labels=labels, captions=caps[1:] + caps[:1], cache_root=tmp_path)
    assert not c.cached  # other texts, another key (class prompts still come from the cache)
    with pytest.raises(UserError, match="2 captions for 3 pool samples"):
        text_features(enc, classes=["cat", "truck"], labels=labels, captions=caps[:2], cache_root=tmp_path)


def test_a_broken_text_encoder_is_named(tmp_path):
    class Broken:
        name, fingerprint, dim = "broken", "broken:1", 4

        def encode(self, texts, batch_size, device):
            return np.ones((len(texts), 3), dtype=np.float32)

    with pytest.raises(PluginError, match="text encoder 'broken' returned an array of shape"):
        text_features(Broken(), classes=["a"], labels=np.zeros(2), cache_root=tmp_path)
    assert not list((tmp_path / "features").glob("*.npy*"))  # no partial cache file left


def _pool_paths(tmp_path: Path) -> list[Path]:
    return [tmp_path / "data" / "train" / c / f for c, f in [("cat", "1.jpg"), ("cat", "2.jpg"), ("dog", "1.jpg")]]


def test_captions_csv_and_jsonl_by_index_and_path(tmp_path):
    paths = _pool_paths(tmp_path)
    f = tmp_path / "caps.csv"
    f.write_text('index,caption\n2,a dog\n0,"a cat, asleep"\n1,  another   cat \n')
    assert load_captions(f, 3) == ["a cat, asleep", "another cat", "a dog"]
    f.write_text(f"path,caption\ncat/2.jpg,B\ndog/1.jpg,C\n{paths[0]},A\n")
    assert load_captions(f, 3, paths) == ["A", "B", "C"]
    j = tmp_path / "caps.jsonl"
    rows = [{"index": 1, "caption": "B"}, {"path": "train/dog/1.jpg", "caption": "C"}, {"path": str(paths[0]),
                                                                                        "caption": "A"}]
    j.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert load_captions(j, 3, paths) == ["A", "B", "C"]


@pytest.mark.parametrize(
    ("name", "content", "paths", "problem"),
    [
        ("c.csv", "index,caption\n0,a\n5,b\n", False, r"line 3: index 5 is out of range; the pool has 3"),
        ("c.csv", "index,caption\n0,a\nx,b\n", False, r"line 3: index 'x' is not a whole number"),
        ("c.csv", "index,caption\n0,a\n1,\n", False, r"line 3: the caption is missing or empty"),
        ("c.csv", "index,caption\n0,a\n1\n", False, r"line 3: expected 2 columns"),
        ("c.csv", "idx,text\n0,a\n", False, r"line 1: the header must name 'caption'"),
        ("c.csv", "index,caption\n0,a\n0,b\n", False, r"line 3: sample 0 already has a caption \(line 2\)"),
        ("c.csv", "index,caption\n0,a\n2,b\n", False, r"no caption for 1 of 3 pool samples \(index 1\)"),
        ("c.csv", "path,caption\ncat/9.jpg,a\n", True, r"line 2: path 'cat/9.jpg' is not an image of the pool"),
        ("c.csv", "path,caption\n1.jpg,a\n", True, r"line 2: path '1.jpg' matches more than one image"),
        ("c.csv", "path,caption\ncat/1.jpg,a\n", False, r"line 2: this dataset has no image files"),
        ("c.jsonl", '{"index": 0, "caption": "a"}\n{"index": 1, "caption": \n', False, r"line 2: not valid JSON"),
        ("c.jsonl", '["a"]\n', False, r"line 1: expected an object"),
        ("c.jsonl", '{"caption": "a"}\n', False, r"line 1: the row needs an 'index' or a 'path'"),
        ("c.jsonl", '{"index": 3, "caption": "a"}\n', False, r"line 1: index 3 is out of range"),
        ("c.txt", "0 a\n", False, r"unknown format '.txt'"),
    ],
)
def test_bad_captions_name_file_line_and_problem(tmp_path, name, content, paths, problem):
    f = tmp_path / name
    f.write_text(content)
    with pytest.raises(UserError, match=problem) as err:
        load_captions(f, 3, _pool_paths(tmp_path) if paths else None)
    assert f"captions file '{f}'" in str(err.value)


def test_missing_captions_file(tmp_path):
    with pytest.raises(UserError, match=r"captions file '.*none\.csv' does not exist"):
        load_captions(tmp_path / "none.csv", 3)


def test_open_clip_text_tower_random_weights(tmp_path):
    enc = OpenClipText(TINY_CLIP, pretrained=None)
    assert isinstance(enc, TextEncoder) and enc.dim == 256 and "random" in enc.fingerprint
    assert enc.space == f"open_clip:{TINY_CLIP}:random-seed0"
    e = enc.encode(["a cat", "a dog", "a truck"], 2, CPU)
    assert e.shape == (3, 256) and e.dtype == np.float32 and _unit(e)
    assert enc._model.visual is None  # text tower only
    again = OpenClipText(TINY_CLIP, pretrained="none").encode(["a cat"], 2, "cpu")
    assert np.allclose(again[0], e[0], atol=1e-5)  # seeded random weights: a stable fingerprint
    tf = text_features(enc, classes=["cat", "dog"], labels=np.array([0, 1]), cache_root=tmp_path,
                       image_space=enc.space)
    assert tf.shared_space and tf.per_class.shape == (2, 256)


def test_open_clip_bad_names_and_unreachable_hub(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # whenever it was imported
    with pytest.raises(UserError, match="unknown open_clip model 'ViT-B-3'"):
        OpenClipText("ViT-B-3")
    with pytest.raises(UserError, match="has no pretrained weights 'nope'; its tags: openai"):
        OpenClipText("ViT-B-32", "nope")
    enc = OpenClipText("ViT-B-32", "openai", cache_dir=str(tmp_path))  # HF_HUB_OFFLINE=1, empty cache
    with pytest.raises(UserError, match="could not load pretrained weights 'openai'.*hub.*text_encoder=minilm"):
        enc.encode(["a cat"], 2, CPU)
