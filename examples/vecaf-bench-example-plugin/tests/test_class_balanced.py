import numpy as np
from vecaf_bench.api import SelectionContext
from vecaf_bench.testing import check_selector

from vecaf_bench_example.class_balanced import ClassBalanced


def test_conforms_to_the_selector_contract():
    check_selector(ClassBalanced, name="class_balanced")


def test_balances_classes_including_earlier_picks():
    labels = np.repeat(np.arange(4), [20, 10, 5, 3])
    feats = np.random.default_rng(0).normal(size=(len(labels), 8)).astype(np.float32)
    earlier = np.flatnonzero(labels == 0)[:4]  # class 0 already has 4
    ctx = SelectionContext(features=feats, selected=earlier, seed=0, round=1, labels=labels, num_classes=4)
    picked = ClassBalanced().select(ctx, 11)
    counts = np.bincount(labels[np.concatenate([earlier, picked])], minlength=4)
    assert counts.tolist() == [4, 4, 4, 3]  # class 3 has only 3
