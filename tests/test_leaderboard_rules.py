"""The leaderboard's rules on summaries of the current format (identity, validation curves,
`best`, `compute`) written here with hand-made curves: cell identity, the target, crossings on
the validation curve, final and best, speed-up, paired rows, incomplete flags, compute, the
val-less fallback and old summaries. Every expected number is computed by hand in the test."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from vecaf_bench.board import plots as lp
from vecaf_bench.board import rules as lb
from vecaf_bench.board import stats as bs

T_975_DOF1 = 12.706204736174707
T_975_DOF2 = 4.302652729911275

IDENTITY = {
    "backbone": "timm:tf_efficientnet_lite0", "batch_size": 32, "captions": None, "cold_start": None,
    "eval_every": 25, "image_size": 32, "label": None, "on_corrupt": "skip", "ood_eval_every": None,
    "recipe": "finetune", "rounds": 1, "selector_options": {}, "shift_seed": 0, "shifts": [], "test_fraction": 0.2,
    "text_domain": "auto", "text_encoder": "auto", "train.lr": 0.02, "train.opt": "sgd", "val_fraction": 0.1,
    "weights": "default",
}


def write(root: Path, selector: str, seed: int, val, test=None, *, budget: int = 50, batches: int = 100,
          dataset: str = "toy", pool: int = 1000, identity=None, compute=None, fwd: int = 0) -> Path:
    """A finished run's summary.json as the runner writes it, with the curves given (test: val - 3)."""
    test = test if test is not None else [v - 3 for v in val]
    steps = [batches * (i + 1) // len(test) for i in range(len(test))]
    ident = {**IDENTITY, "selector": selector, "dataset": dataset, "label_budget": str(budget),
             "batch_budget": batches, "seed": seed, **(identity or {})}
    has_val = val is not None and ident["val_fraction"] != 0
    points = [{"step": s, "top1": t, "top5": 99.0, "loss": 1.0, **({"val_top1": v} if has_val else {})}
              for s, t, v in zip(steps, test, val or test, strict=True)]
    best = None
    if has_val:
        i = int(np.argmax(val))  # the first of ties
        best = {"step": steps[i], "val_top1": val[i], "test_top1": test[i]}
    run_id = f"{dataset}-{selector}-{budget}-b{batches}-{abs(hash(json.dumps(ident, sort_keys=True)))}-s{seed}"
    d = root / run_id
    d.mkdir(parents=True)
    summary = {
        "run_id": run_id, "status": "finished", "selector": selector, "uses": [], "dataset": dataset, "seed": seed,
        "capabilities": {"whole_pool": selector == "full", "reselects": False, "randomized": True,
                         "cold_start": None},
        "label_budget": pool if selector == "full" else budget, "label_budget_requested": str(budget),
        "batch_budget": batches, "batch_size": 32, "steps": batches, "pool_size": pool,
        "test_top1": test[-1], "test_top5": 99.0, "curve": points, "selection_seconds": 0.5,
        "selection_forward_batches": fwd, "label": ident["label"],
        "val": {"size": 100, "fraction": 0.1, "seed": 0, "source": "carved from the pool"} if has_val else None,
        "best": best, "identity": ident,
        "compute": compute or {"train_images": batches * 32, "selection_images": fwd * 64, "feature_images": 0,
                               "feature_cached": True, "eval_images": 400 * len(steps)},
    }
    (d / "summary.json").write_text(json.dumps(summary))
    return d


# toy, 100 batches, evaluations at 25/50/75/100: full's best val 90 and 92 -> target 0.95 x 91 = 86.45
FULL100 = {0: [50, 70, 90, 88], 1: [52, 72, 86, 92]}
FULL50 = {0: [70, 95], 1: [72, 96]}  # higher, but at a shorter budget: not the target's source
AFT = {0: [70, 87, 90, 91], 1: [72, 88, 89, 92], 2: [75, 86, 90, 93]}
RND = {0: [60, 80, 88, 89], 1: [58, 84, 90, 90], 2: [62, 78, 86, 91]}
RND_TEST1 = [55, 81, 88, 85]  # random seed 1's test curve: best val at 75 (first of the tied 90s), test 88 there
VEC = {0: [71, 85, 90, 92], 1: [70, 86, 91, 93], 2: [73, 84, 89, 92]}
VEC3 = {0: [75, 90, 95, 97], 1: [76, 91, 96, 98]}  # seeds 0 and 1 only: incomplete, however good
RND50 = {0: [70, 80], 1: [75, 88], 2: [72, 87]}
TARGET = 0.95 * 91


def crossing(s0, a0, s1, a1, target=TARGET):
    return s0 + (target - a0) / (a1 - a0) * (s1 - s0)


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    for seed, v in FULL100.items():
        write(root, "full", seed, v)
    for seed, v in FULL50.items():
        write(root, "full", seed, v, batches=50)
    for seed, v in AFT.items():
        write(root, "activeft", seed, v)
        write(root, "activeft", seed, [x - 10 for x in v], identity={"recipe": "linear-probe"})
    for seed, v in RND.items():
        write(root, "random", seed, v, test=RND_TEST1 if seed == 1 else None)
        write(root, "random", seed, [x - 12 for x in v], identity={"recipe": "linear-probe"})
    for seed, v in VEC.items():
        write(root, "vecaf", seed, v, fwd=10, compute={"train_images": 3200, "selection_images": 3000 + seed,
                                                       "feature_images": 1000, "feature_cached": False})
        write(root, "vecaf", seed, [x - 1 for x in v], identity={"label": "vecaf-ablation",
                                                                "selector_options": {"eta": 0}})
    for seed, v in VEC3.items():
        write(root, "vecaf", seed, v, identity={"rounds": 3})
    for seed, v in RND50.items():
        write(root, "random", seed, v, batches=50)
    return root


def board_of(root: Path, **kw) -> lb.Board:
    return lb.build_board(lb.load_records(root)[0], **kw)


def row(board: lb.Board, name: str, dataset: str = "toy", batches: int = 100, budget: int | None = 50) -> lb.Row:
    found = [r for r in board.rows if (r.name, r.dataset, r.batch_budget) == (name, dataset, batches)
             and (budget is None or r.label_budget == budget or r.whole_pool)]
    assert len(found) == 1, [(r.name, r.dataset, r.batch_budget, r.label_budget) for r in board.rows]
    return found[0]


def test_two_configs_of_one_selector_are_two_rows_with_readable_keys(runs):
    board = board_of(runs)
    names = sorted(r.name for r in board.rows if r.batch_budget == 100)
    assert names == ["activeft", "activeft [linear-probe]", "full", "random", "random [linear-probe]", "vecaf",
                     "vecaf {rounds=3}", "vecaf-ablation"]
    assert row(board, "vecaf {rounds=3}").n == 2 and row(board, "vecaf").n == 3  # never merged, no seed lost
    assert row(board, "vecaf-ablation").method["selector_options"] == {"eta": 0}


def test_the_target_is_a_fraction_of_fulls_best_val_at_the_longest_budget(runs):
    board = board_of(runs)
    t = board.targets["toy"]
    assert board.curve_sources["toy"] == "val"
    assert t.value == pytest.approx(TARGET) and t.reference_batches == 100 and t.reference_mean == pytest.approx(91)
    assert t.text == "target 86.45 = 0.95 x full's best val top-1 at 100 batches (91.00, mean of 2 seed(s))"
    assert row(board, "full", batches=100).reference and not row(board, "full", batches=50).reference
    assert board_of(runs, target_fraction=0.9).targets["toy"].value == pytest.approx(0.9 * 91)
    explicit = board_of(runs, target=80.0).targets["toy"]
    assert explicit.value == 80.0 and explicit.text == "target 80.00 (--target, on the val top-1)"
    with pytest.raises(lb.UserError, match="target-fraction"):
        board_of(runs, target_fraction=0)


def test_crossings_read_the_val_curve_interpolated_and_full_by_the_same_rule(runs):
    board = board_of(runs)
    aft = row(board, "activeft")
    hits = [crossing(25, 70, 50, 87), crossing(25, 72, 50, 88), crossing(50, 86, 75, 90)]
    assert list(aft.crossings.values()) == pytest.approx(hits)  # val curves, not the test curves (val - 3)
    assert aft.batches_to_target == pytest.approx(np.mean(hits))
    assert aft.btt_ci == pytest.approx(T_975_DOF2 * np.std(hits, ddof=1) / math.sqrt(3))
    assert aft.images_to_target == pytest.approx(np.mean(hits) * 32)
    full = row(board, "full")
    full_hits = [crossing(50, 70, 75, 90), crossing(75, 86, 100, 92)]
    assert list(full.crossings.values()) == pytest.approx(full_hits)
    # the speed-up: full at the row's batch budget (100), delta-method interval on the log ratio
    r, lo, hi = bs.ratio_ci(full_hits, hits)
    assert r == pytest.approx(np.mean(full_hits) / np.mean(hits))
    h = T_975_DOF1 * math.sqrt(np.var(full_hits, ddof=1) / (2 * np.mean(full_hits) ** 2)
                               + np.var(hits, ddof=1) / (3 * np.mean(hits) ** 2))
    assert (aft.speedup, aft.speedup_low, aft.speedup_high) == (pytest.approx(r), pytest.approx(r * math.exp(-h)),
                                                                 pytest.approx(r * math.exp(h)))
    assert aft.speedup_reference == "full @100 batches"
    # random at 50 batches: full ran 50 batches too, so that is the reference (its first evaluation, 70 and
    # 72 @25, is below the target; 95 and 96 @50 above)
    rnd50 = row(board, "random", batches=50)
    full50 = [crossing(25, 70, 50, 95), crossing(25, 72, 50, 96)]
    assert rnd50.speedup_reference == "full @50 batches" and rnd50.reached == 2
    assert rnd50.batches_to_target is None and rnd50.speedup is None  # seed 0 (80 @50) never gets there
    assert row(board, "full", batches=50).batches_to_target == pytest.approx(np.mean(full50))
    # a first evaluation already at the target crosses at its step
    low = board_of(runs, target=74.0)
    expected = [crossing(25, 70, 50, 87, 74), crossing(25, 72, 50, 88, 74), 25]  # seed 2: 75 @25 already
    assert list(row(low, "activeft").crossings.values()) == pytest.approx(expected)
    md = lb.to_markdown(board)
    assert "| random | features | 3 | " in md and "not reached (2/3)" in md


def test_final_and_test_at_best_val(runs):
    rnd = row(board_of(runs), "random")
    finals = [89 - 3, 85, 91 - 3]
    assert rnd.mean == pytest.approx(np.mean(finals))
    # best val: seed 0 at 100 (89) -> test 86; seed 1 the first of its tied 90s, at 75 -> test 88; seed 2 at 100
    assert rnd.best_step == {0: 100, 1: 75, 2: 100} and rnd.best_val == {0: 89, 1: 90, 2: 91}
    assert rnd.best_test == {0: 86, 1: 88, 2: 88}
    assert rnd.best_mean == pytest.approx(np.mean([86, 88, 88]))
    assert rnd.best_ci == pytest.approx(T_975_DOF2 * np.std([86, 88, 88], ddof=1) / math.sqrt(3))


def test_paired_against_random_and_the_reference_with_the_same_recipe(runs):
    board = board_of(runs)
    vec = row(board, "vecaf")
    d = np.array([(92 - 3) - (89 - 3), (93 - 3) - 85, (92 - 3) - (91 - 3)], dtype=float)  # test = val - 3
    p = vec.vs["random"].final
    assert vec.vs["random"].name == "random" and p.mean == pytest.approx(d.mean())
    half = T_975_DOF2 * d.std(ddof=1) / math.sqrt(3)
    assert (p.low, p.high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert p.p == pytest.approx(0.25) and p.excludes_zero == (d.mean() - half > 0)
    best = vec.vs["random"].best  # test @ best val: vecaf's best val is its last point for every seed
    assert best.mean == pytest.approx(np.mean([(92 - 3) - 86, (93 - 3) - 88, (92 - 3) - 88]))
    assert vec.vs["reference"].name == "activeft"
    # the linear-probe rows meet the linear-probe random, never the finetuned one
    lp_aft = row(board, "activeft [linear-probe]")
    assert lp_aft.vs["random"].name == "random [linear-probe]"
    assert lp_aft.vs["random"].final.mean == pytest.approx(np.mean([(91 - 13) - (89 - 15), (92 - 13) - (90 - 15),
                                                                    (93 - 13) - (91 - 15)]))
    assert "reference" not in lp_aft.vs and "random" not in row(board, "random [linear-probe]").vs
    assert "reference" not in row(board, "activeft").vs  # never against itself
    # --reference: another selector
    other = board_of(runs, reference="vecaf")
    assert row(other, "random").vs["reference"].name == "vecaf" and other.reference == "vecaf"


def test_incomplete_rows_are_flagged_and_never_bold(runs):
    board = board_of(runs)
    v3 = row(board, "vecaf {rounds=3}")
    assert v3.incomplete and v3.expected_seeds == [0, 1, 2] and v3.mean > row(board, "vecaf").mean
    assert not v3.best_final and not v3.best_at_best
    best = [r.name for r in board.rows if r.best_final and r.batch_budget == 100 and not r.whole_pool]
    assert best == ["vecaf"]  # the best complete row (89.33), not the incomplete 94.5
    md = lb.to_markdown(board)
    assert "| vecaf {rounds=3} | features | 2/3 seeds | 94.50 ± 6.35 (2/3 seeds) |" in md
    assert "**94.50" not in md and "| vecaf | features | 3 | **89.33 ± " in md
    assert any("miss seeds of their setting" in n for n in board.notes)
    # full's expected seeds are its own dataset x batch budget: complete
    assert not row(board, "full").incomplete and not row(board, "full", batches=50).incomplete


def test_compute_columns(runs):
    board = board_of(runs)
    vec = row(board, "vecaf")
    assert vec.train_select_images == pytest.approx(3200 + 3001) and vec.feature_images == 1000
    assert row(board, "random").train_select_images == 3200 and row(board, "random").feature_images == 0
    md = lb.to_markdown(board)
    assert "| 6201 | 1000 |" in md and "| 3200 | 0 (cached) |" in md


def test_no_validation_split_falls_back_to_the_test_curve_and_says_so(tmp_path):
    root = tmp_path / "runs"
    for seed, v in FULL100.items():
        write(root, "full", seed, v, dataset="noval", identity={"val_fraction": 0})
    for seed, v in RND.items():
        write(root, "random", seed, v, dataset="noval", identity={"val_fraction": 0})
    # one dataset where one run lacks val: every run on it is read off the test curve
    write(root, "full", 0, [50, 90], dataset="mixed", batches=50)
    write(root, "random", 0, [50, 80], dataset="mixed", batches=50, identity={"val_fraction": 0})
    board = board_of(root)
    assert board.curve_sources == {"mixed": "test", "noval": "test"}
    t = board.targets["noval"]  # full's best *test* top-1: 90 - 3 and 92 - 3
    assert t.value == pytest.approx(0.95 * 88) and t.curve == "test"
    assert "best test top-1" in t.text
    md = lb.to_markdown(board)
    assert "noval: no validation split: targets read off the test split (5 of 5 run(s)" in md
    assert "mixed: no validation split: targets read off the test split (1 of 2 run(s)" in md
    assert list(row(board, "random", dataset="noval").crossings.values()) == pytest.approx(
        [crossing(50, 77, 75, 85, 0.95 * 88), crossing(50, 81, 75, 87, 0.95 * 88), crossing(75, 83, 100, 88,
                                                                                           0.95 * 88)])


def test_old_summaries_load_with_derived_compute(tmp_path):
    d = tmp_path / "runs" / "old-s0"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({
        "status": "finished", "selector": "vecaf", "dataset": "old", "seed": 0, "label_budget": 10,
        "batch_budget": 20, "batch_size": 16, "steps": 20, "pool_size": 100, "test_top1": 70.0,
        "rounds_requested": 3, "curve": [{"step": 10, "top1": 60.0}, {"step": 20, "top1": 70.0}],
        "selection_forward_batches": 5, "features": {"cached": False, "seconds": 1.0}}))
    e = tmp_path / "runs" / "older-s0"  # not even a batch size
    e.mkdir()
    (e / "summary.json").write_text(json.dumps({
        "status": "finished", "selector": "random", "dataset": "old", "seed": 0, "label_budget": 10,
        "batch_budget": 20, "pool_size": 100, "test_top1": 65.0, "curve": [{"step": 20, "top1": 65.0}]}))
    board = board_of(tmp_path / "runs")
    vec = next(r for r in board.rows if r.selector == "vecaf")
    assert vec.records[0].identity_source == "partial" and vec.method["rounds"] == 3
    assert vec.train_images == 20 * 16 and vec.selection_images == 5 * 64  # forward batches x max(16, 64)
    assert vec.feature_images is None and vec.best_test == {0: 70.0}
    rnd = next(r for r in board.rows if r.selector == "random")
    assert rnd.train_select_images is None and rnd.records[0].val_curve == []
    md = lb.to_markdown(board)
    assert "| ? | ? |" in md and "predate summary 'compute'" in md and "predate summary 'identity'" in md


def test_aubc_over_three_budgets_with_a_missing_seed(tmp_path):
    root = tmp_path / "runs"
    acc = {10: (60, 62), 30: (80, 78), 50: (85, None)}  # seed 1 never ran the 50-image budget
    for budget, (a0, a1) in acc.items():
        write(root, "random", 0, [a0 + 3], budget=budget, batches=10)
        if a1 is not None:
            write(root, "random", 1, [a1 + 3], budget=budget, batches=10)
    board = board_of(root)
    (a,) = board.aubc
    assert a.budgets == [10, 30, 50] and a.seeds == [0] and a.expected_seeds == [0, 1] and a.incomplete
    assert a.per_seed[0] == pytest.approx(((60 + 80) / 2 * 20 + (80 + 85) / 2 * 20) / 40)
    assert "| 10, 30, 50 | 1/2 seeds | 76.25 |" in lb.to_markdown(board)


def test_json_csv_and_plots_carry_the_new_numbers(runs, tmp_path):
    board = board_of(runs)
    data = json.loads(lb.to_json(board))
    aft = next(r for r in data["rows"] if r["method"] == "activeft" and r["batch_budget"] == 100)
    assert aft["curve_source"] == "val" and aft["identity"]["recipe"] == "finetune"
    assert aft["speedup_low"] < aft["speedup"] < aft["speedup_high"]
    assert aft["per_seed"]["2"]["crossing"] == pytest.approx(crossing(50, 86, 75, 90))
    assert aft["vs_random_final_p"] == pytest.approx(0.25) and aft["best_test_top1"] is not None
    assert data["targets"]["toy"]["reference_batches"] == 100 and data["target_fraction"] == 0.95
    assert any(p["against"] == "random" and p["method"] == "vecaf" for p in data["paired"])
    csv_text = lb.to_csv(board)
    head = csv_text.splitlines()[0].split(",")
    for col in ("method", "incomplete", "best_test_top1", "batches_to_target_ci95", "speedup_low",
                "vs_reference_best_p", "train_select_images", "feature_images", "images_to_target"):
        assert col in head
    paths = lp.write_plots(board, tmp_path / "p.png")
    assert paths == [tmp_path / "p.png"] and paths[0].stat().st_size > 20_000
    # a panel per recipe, both batch budgets in each
    assert [p[:2] for p in lp.curve_panels(board)] == [("toy", 50)] * 2
    assert {p[2] for p in lp.curve_panels(board)} == {"", " [linear-probe]"}


def test_cli_target_fraction_and_reference(runs):
    import typer

    from vecaf_bench.cli import friendly
    from vecaf_bench.cli_suite import leaderboard

    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(friendly(leaderboard))
    app.command("noop")(lambda: None)
    r = CliRunner().invoke(app, ["leaderboard", str(runs), "--format", "markdown", "--target-fraction", "0.9",
                                 "--reference", "vecaf"])
    assert r.exit_code == 0, r.output
    assert "target 81.90 = 0.9 x full's best val top-1 at 100 batches" in r.output and "Δ vs vecaf" in r.output
    r = CliRunner().invoke(app, ["leaderboard", str(runs)])
    assert r.exit_code == 0 and "paired differences" in r.output and "vecaf {rounds=3}" in r.output
    assert "random [linear-probe]" in r.output  # rich markup escaped: the recipe is no tag


def test_recipe_options_and_clashing_labels_keep_rows_apart(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        write(root, "random", seed, [80, 85])
        write(root, "random", seed, [70, 75], identity={"recipe": "lp-ft", "recipe_options": {"probe_steps": 5}})
        write(root, "activeft", seed, [81, 86], identity={"label": "mine"})
        write(root, "activeft", seed, [82, 87], identity={"label": "mine", "train.lr": 0.05})
    names = sorted(r.name for r in board_of(root).rows)
    assert names == ["mine {train.lr=0.02}", "mine {train.lr=0.05}", "random", "random [lp-ft probe_steps=5]"]
