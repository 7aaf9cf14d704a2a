"""coreset-model: k-center on the model's embeddings equals `coreset` run on those embeddings as
features (sklearn digits as the embeddings), the first pick is the farthest point from the
earlier picks, raw embeddings with normalize=False against a numpy k-center, the kit."""

from __future__ import annotations

import numpy as np
import pytest
from fixed_outputs import context
from sklearn.datasets import load_digits

from vecaf_bench.api import Capabilities, UserError
from vecaf_bench.run.selection_round import build_context
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors.coreset import KCenterGreedy
from vecaf_bench_plugins.selectors.coreset_model import CoresetModel


def digits() -> np.ndarray:
    return load_digits().data[:600].astype(np.float32)  # 600 x 64, unnormalised


def model_context(emb, **kw):
    return context(CoresetModel, embeddings=emb, name="coreset-model", **kw)


def hand_kcenter(x: np.ndarray, selected, count: int) -> list[int]:
    """Greedy k-center in float64: the point farthest from its nearest centre, lowest index on ties."""
    x = x.astype(np.float64)
    dmin = np.min(np.linalg.norm(x[:, None] - x[None, list(selected)], axis=2), axis=1)
    picks = []
    for _ in range(count):
        dmin[list(selected) + picks] = -1
        u = int(np.argmax(dmin))
        picks.append(u)
        dmin = np.minimum(dmin, np.linalg.norm(x - x[u], axis=1))
    return picks


def test_equals_coreset_on_the_embeddings():
    emb, earlier = digits(), [4, 100, 250, 599]
    ctx, provider = model_context(emb, selected=earlier)
    got = np.asarray(CoresetModel().select(ctx, 25))
    plain = build_context(selector="coreset", capabilities=Capabilities(), features=emb,
                          selected=np.asarray(earlier, dtype=np.int64))  # fmt: skip
    assert got.tolist() == np.asarray(KCenterGreedy().select(plain, 25)).tolist()
    assert len(set(got.tolist())) == 25 and not set(got.tolist()) & set(earlier)
    # one request: the embeddings of the whole pool (the earlier picks are the centres), counted
    assert provider.asked == [(list(range(len(emb))), frozenset({"embeddings"}), 0, 0.5)]
    assert ctx.forward_batches > 0


def test_picks_the_farthest_point_first():
    emb, earlier = digits(), [0, 1, 2]
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    got = np.asarray(CoresetModel().select(model_context(emb, selected=earlier)[0], 5))
    far = np.min(np.linalg.norm(unit[:, None] - unit[None, earlier], axis=2), axis=1)
    far[earlier] = -1
    assert got[0] == int(np.argmax(far))
    assert got.tolist() == hand_kcenter(unit, earlier, 5)


def test_normalize_false_runs_on_the_raw_embeddings():
    emb = digits()[:200]
    raw = CoresetModel(normalize=False, chunk=2).select(model_context(emb, selected=[5, 6, 7])[0], 10)
    assert raw.tolist() == hand_kcenter(emb, [5, 6, 7], 10)
    unit = CoresetModel().select(model_context(emb, selected=[5, 6, 7])[0], 10)
    assert raw.tolist() != unit.tolist()  # the norms of digit images differ: another geometry


def test_with_no_earlier_picks_the_first_centre_comes_from_the_seed():
    emb = digits()[:100]
    runs = [CoresetModel().select(model_context(emb, seed=s, round=0)[0], 6).tolist() for s in (0, 0, 3)]
    assert runs[0] == runs[1] and runs[0] != runs[2]
    assert runs[0][1:] == hand_kcenter(emb / np.linalg.norm(emb, axis=1, keepdims=True), [runs[0][0]], 5)


def test_conforms_and_validates():
    check_selector(CoresetModel, name="coreset-model")
    options = {"normalize": False, "chunk": 3, "precision": "bf16"}
    check_selector(CoresetModel, options=options, name="coreset-model")
    caps = CoresetModel.capabilities
    assert caps.uses == {"model"} and caps.cold_start == "random"
    assert len(CoresetModel().select(model_context(digits()[:10])[0], 0)) == 0


@pytest.mark.parametrize("bad", [{"normalize": "yes"}, {"chunk": 0}, {"precision": "fp16"}])
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="coreset-model " + next(iter(bad))):
        CoresetModel(**bad)
