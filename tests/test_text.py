"""Text encoders and annotations: real semantics, prompts, captions, cache."""

import json

import numpy as np
import pytest
import torch

from vecaf_bench.errors import UserError
from vecaf_bench.pluginmanager import PluginHost
from vecaf_bench.text import domain_templates, load_captions, text_features
from vecaf_bench_plugins.text_encoders.minilm import MiniLM

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def minilm():
    return MiniLM()


def test_minilm_has_real_semantics(minilm):
    e = minilm.encode(["a photo of a cat", "a photo of a dog", "a photo of a truck"], 8, CPU)
    assert e.shape == (3, 384) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2]


def test_text_encoders_are_plugins():
    names = PluginHost().registries["text_encoders"].names()
    assert {"minilm", "open_clip"} <= set(names)


def test_class_prompts_domains_and_cache(minilm, tmp_path):
    labels = np.array([0, 1, 1, 0])
    a = text_features(minilm, classes=["cat", "truck"], labels=labels, cache_root=tmp_path)
    assert a.per_class.shape == (2, 384) and not a.cached
    assert np.allclose(np.linalg.norm(a.per_class, axis=1), 1, atol=1e-5)
    assert np.array_equal(a.per_sample, a.per_class[labels])
    b = text_features(minilm, classes=["cat", "truck"], labels=labels, cache_root=tmp_path)
    assert b.cached and np.array_equal(a.per_class, b.per_class)
    sketch = text_features(minilm, classes=["cat", "truck"], labels=labels, cache_root=tmp_path, domain="sketch")
    assert not np.allclose(sketch.per_class, a.per_class)
    assert domain_templates("sketch")[0]("cat") == "a sketch of a cat."
    assert domain_templates("claymation")[0]("cat") == "a claymation of a cat."


def test_captions_csv_jsonl_and_errors(minilm, tmp_path):
    csv = tmp_path / "c.csv"
    csv.write_text("index,caption\n1,a red truck\n0,a sleeping cat\n")
    assert load_captions(csv, 2) == ["a sleeping cat", "a red truck"]
    jl = tmp_path / "c.jsonl"
    paths = [tmp_path / "img" / "a.jpg", tmp_path / "img" / "b.jpg"]
    jl.write_text("\n".join(json.dumps(r) for r in [{"path": "b.jpg", "caption": "B"}, {"path": str(paths[0]),
                                                                                          "caption": "A"}]))
    assert load_captions(jl, 2, paths) == ["A", "B"]
    caps = text_features(minilm, classes=["cat", "truck"], labels=np.array([0, 1]), cache_root=tmp_path,
                         captions=load_captions(csv, 2))
    assert caps.per_sample.shape == (2, 384) and not np.allclose(caps.per_sample, caps.per_class)
    with pytest.raises(UserError, match="does not exist"):
        load_captions(tmp_path / "none.csv", 2)
    csv.write_text("index,caption\n5,x\n")
    with pytest.raises(UserError, match=r"line 2: index 5 is outside the pool \[0, 2\)"):
        load_captions(csv, 2)
    csv.write_text("index,caption\n0,x\n")
    with pytest.raises(UserError, match="no caption for 1 of 2"):
        load_captions(csv, 2)
    jl.write_text('{"path": "zzz.jpg", "caption": "x"}\n')
    with pytest.raises(UserError, match="path 'zzz.jpg' is not an image of the pool"):
        load_captions(jl, 2, paths)


def test_open_clip_text_tower_random_weights():
    from vecaf_bench_plugins.text_encoders.open_clip_text import OpenClipText

    enc = OpenClipText("RN50", pretrained=None)
    e = enc.encode(["a cat", "a dog", "a truck"], 2, CPU)
    assert e.shape == (3, 1024) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    with pytest.raises(UserError, match="unknown open_clip model 'RN5'"):
        OpenClipText("RN5")
