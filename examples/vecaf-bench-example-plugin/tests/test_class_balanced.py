import numpy as np
import pytest
from vecaf_bench.api import Capabilities, SelectionContext, UndeclaredUse
from vecaf_bench.testing import check_selector

from vecaf_bench_example.class_balanced import ClassBalanced


def test_conforms_to_the_selector_contract():
    check_selector(ClassBalanced, name="class_balanced")


def test_balances_classes_including_earlier_picks():
    labels = np.repeat(np.arange(4), [20, 10, 5, 3])
    feats = np.random.default_rng(0).normal(size=(len(labels), 8)).astype(np.float32)
    earlier = np.flatnonzero(labels == 0)[:4]  # class 0 already has 4
    ctx = SelectionContext(
        features=feats,
        selected=earlier,
        seed=0,
        round=1,
        num_classes=4,
        selector="class_balanced",
        uses=ClassBalanced.capabilities.uses,
        _labels=labels,  # the engine passes labels only to a selector that declares them
    )
    picked = ClassBalanced().select(ctx, 11)
    counts = np.bincount(labels[np.concatenate([earlier, picked])], minlength=4)
    assert counts.tolist() == [4, 4, 4, 3]  # class 3 has only 3


def test_declares_the_labels_it_reads():
    assert ClassBalanced.capabilities == Capabilities(uses={"labels"})
    feats = np.zeros((6, 2), dtype=np.float32)
    ctx = SelectionContext(features=feats, selected=np.zeros(0, dtype=np.int64), seed=0, _labels=np.zeros(6))
    with pytest.raises(UndeclaredUse):  # a context for a selector that declares nothing withholds them
        ClassBalanced().select(ctx, 2)
