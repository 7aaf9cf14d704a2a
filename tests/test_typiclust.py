"""typiclust: the cluster order (least covered first, skipped small clusters), typicality against a dense
reference, duplicates, seeds, the kit and one CLI run."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from vecaf_bench.api import Capabilities, UserError
from vecaf_bench.run.selection_round import build_context
from vecaf_bench.testing import check_selector
from vecaf_bench_plugins.selectors.typiclust import EPS, TypiClust, pick_order, typicality


def _digits() -> np.ndarray:
    return load_digits().data.astype(np.float32)


def _ctx(feats: np.ndarray, seed: int = 0, selected=()) -> object:
    return build_context(
        selector="typiclust",
        capabilities=Capabilities(),
        features=feats,
        seed=seed,
        selected=np.asarray(selected, dtype=np.int64),
        num_classes=10,
    )


def _check_order(labels: np.ndarray, picks: np.ndarray, selected: np.ndarray, min_size: int = 5) -> None:
    """Each pick comes from a large cluster with the fewest selected points among the large clusters that
    still have unselected points (ties: no smaller than any other such cluster)."""
    k = labels.max() + 1
    sizes = np.bincount(labels, minlength=k)
    have = np.bincount(labels[selected], minlength=k) if len(selected) else np.zeros(k, dtype=int)
    left = sizes - have
    large = sizes > min_size
    for t, p in enumerate(picks):
        c = labels[p]
        open_ = large & (left > 0)
        assert large[c], f"pick {t} from a cluster of {sizes[c]} points while large clusters had room"
        fewest = have[open_].min()
        assert have[c] == fewest, f"pick {t}: cluster with {have[c]} selected while one had {fewest}"
        assert sizes[c] == sizes[open_ & (have == fewest)].max(), (
            f"pick {t}: a larger, as covered, cluster waited"
        )
        have[c] += 1
        left[c] -= 1


@pytest.mark.parametrize("with_earlier", [False, True])
def test_one_point_per_large_cluster_before_a_second(with_earlier):
    x = _digits()
    earlier = np.random.default_rng(5).choice(len(x), 25, replace=False) if with_earlier else np.zeros(0, int)
    tc = TypiClust(max_clusters=30)  # K = 30 < |selected| + count: the picks go round the clusters twice
    ctx = _ctx(x, 1, earlier)
    labels, _ = tc.cluster(ctx, 60)  # the clustering select() makes (same seed, fresh generator)
    sel = tc.select(ctx, 60)
    picks = np.asarray(sel.indices)
    assert len(set(picks.tolist())) == 60 and not set(picks.tolist()) & set(earlier.tolist())
    _check_order(labels, picks, earlier)
    assert sel.stats["clusters"] == 30
    if not with_earlier:  # one per large cluster first, largest first
        large = int(sel.stats["large_clusters"])
        first = labels[picks[:large]]
        assert len(set(first.tolist())) == large
        sizes = np.bincount(labels)
        assert np.all(np.diff(sizes[first]) <= 0)


def test_each_pick_is_its_clusters_most_typical_unselected_point():
    """Typicality against a dense float64 reference: 1 / (mean of the 20 smallest distances to the
    other members + 1e-5); each pick the argmax over its cluster's unselected members."""
    x = _digits()
    tc = TypiClust()
    ctx = _ctx(x, 2)
    labels, _ = tc.cluster(ctx, 40)
    sel = tc.select(ctx, 40)
    f = ctx.features_tensor().numpy().astype(np.float64)
    taken: set[int] = set()
    for p, score in zip(np.asarray(sel.indices), np.asarray(sel.scores), strict=True):
        members = np.flatnonzero(labels == labels[p])
        d = np.sqrt(((f[members, None, :] - f[None, members, :]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        k = min(20, len(members) - 1)
        typ = 1.0 / (np.sort(d, axis=1)[:, :k].mean(1) + EPS)
        free = np.array([m not in taken for m in members])
        assert score == pytest.approx(typ[members == p][0], rel=1e-5)
        assert typ[members == p][0] >= typ[free].max() * (1 - 1e-5)
        taken.add(int(p))


def test_small_clusters_wait_until_the_large_ones_are_exhausted():
    """pick_order on given clusters: 3 large (8, 7, 6 points) and 2 small (5, 2): the 21 large points
    go first, round by round, then the small clusters; and count is always met."""
    labels = np.array([0] * 8 + [1] * 7 + [2] * 6 + [3] * 5 + [4] * 2)
    rng = np.random.default_rng(0)
    t = rng.random(len(labels))

    def typ(c):
        members = np.flatnonzero(labels == c)
        return members, t[members]

    picks, scores, counters = pick_order(labels, typ, np.zeros(0, dtype=np.int64), len(labels), 5)
    assert sorted(picks.tolist()) == list(range(len(labels)))
    assert set(labels[picks[:21]].tolist()) == {0, 1, 2} and set(labels[picks[21:]].tolist()) == {3, 4}
    assert labels[picks[:3]].tolist() == [0, 1, 2]  # fewest selected, then the larger cluster
    assert counters == {"large_clusters": 3, "skipped_clusters": 2, "skipped_points": 7, "fallback_picks": 7}
    _check_order(labels, picks[:21], np.zeros(0, dtype=np.int64))
    for c in range(5):  # within a cluster: most typical first
        mine = scores[labels[picks] == c]
        assert np.all(np.diff(mine) <= 0)


def test_a_pool_with_small_clusters_never_picks_them_while_large_ones_remain():
    """Digits plus four far groups of three near-identical points: k-means gives them clusters of
    three, which no pick touches."""
    x = _digits()
    rng = np.random.default_rng(3)
    far = []
    for g in range(4):
        centre = np.zeros(x.shape[1], dtype=np.float32)
        centre[g] = 100.0  # a direction no digit has much of: pixel g is ~0 on every digit
        far.append(centre + 0.01 * rng.normal(size=(3, x.shape[1])).astype(np.float32))
    pool = np.concatenate([x, *far])
    tc = TypiClust(max_clusters=30)
    ctx = _ctx(pool, 0)
    labels, _ = tc.cluster(ctx, 30)
    sizes = np.bincount(labels)
    assert (sizes <= 5).sum() >= 1, "the far groups should make small clusters"
    sel = tc.select(ctx, 30)
    assert np.all(sizes[labels[np.asarray(sel.indices)]] > 5)
    assert sel.stats["skipped_clusters"] == int(((sizes > 0) & (sizes <= 5)).sum())
    assert sel.stats["fallback_picks"] == 0


def test_duplicates_do_not_crash_and_give_finite_scores():
    x = _digits()[:200]
    pool = np.concatenate([x, np.repeat(x[:10], 30, axis=0)])  # 10 points, 31 copies each
    sel = TypiClust().select(_ctx(pool, 0), 20)
    scores = np.asarray(sel.scores)
    assert np.all(np.isfinite(scores)) and len(set(np.asarray(sel.indices).tolist())) == 20
    assert scores.max() == pytest.approx(1.0 / EPS)  # a point whose 20 neighbours are its own copies
    same = np.ones((40, 8), dtype=np.float32)  # every point the same: one distinct value
    sel = TypiClust().select(_ctx(same, 0), 10)
    assert np.all(np.isfinite(np.asarray(sel.scores))) and len(set(np.asarray(sel.indices).tolist())) == 10


def test_typicality_in_blocks_equals_one_block():
    import torch

    f = torch.nn.functional.normalize(torch.from_numpy(_digits()[:300]), dim=1)
    members = torch.arange(0, 300, 2)
    assert torch.equal(typicality(f, members, 20, 7), typicality(f, members, 20, 1000))
    assert torch.equal(typicality(f, members[:1], 20, 7), torch.zeros(1, dtype=torch.float64))


def test_same_seed_same_picks_other_seed_other_picks():
    x = _digits()
    a, b = (np.asarray(TypiClust().select(_ctx(x, 3), 15).indices) for _ in range(2))
    assert np.array_equal(a, b)
    assert not np.array_equal(np.sort(a), np.sort(np.asarray(TypiClust().select(_ctx(x, 4), 15).indices)))


@pytest.mark.parametrize(
    "bad", [{"max_clusters": 0}, {"min_cluster_size": -1}, {"knn": 0}, {"n_init": 1.5}, {"chunk": 0}]
)
def test_bad_options_name_the_option(bad):
    with pytest.raises(UserError, match="typiclust " + next(iter(bad))):
        TypiClust(**bad)


def test_typiclust_passes_the_kit():
    check_selector(TypiClust, name="typiclust")


@pytest.mark.slow
def test_a_run_with_typiclust(cli, tmp_path):
    from conftest import TINY, summary_of

    r = cli(
        "run",
        "--plugin",
        "vecaf_bench_plugins.selectors.typiclust",
        "--selector",
        "typiclust",
        *TINY,
        "--out",
        tmp_path,
    )
    assert r.exit_code == 0, r.output
    stats = summary_of(tmp_path)["rounds"][0]["stats"]
    assert stats["clusters"] == 30 and stats["fallback_picks"] + stats["large_clusters"] >= 1
