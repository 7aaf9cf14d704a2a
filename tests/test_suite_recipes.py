"""The finetuning recipe as a suite axis, and the method label a suite hands the board."""

import pytest
from suite_kit import whole_pool, write_suite

from vecaf_bench.errors import UserError
from vecaf_bench.suite.grid import load_suite


def _load(path, sets=None):
    return load_suite(path, sets=sets, whole_pool=whole_pool)


def test_recipes_cross_every_selector_and_name_their_runs(tmp_path):
    path = write_suite(tmp_path, selectors=["random", "full"], seeds=[0],
                       recipes=["finetune", {"name": "lp-ft", "recipe_options": {"probe_fraction": 0.25}}])
    suite = _load(path)
    got = {(r.point.selector, r.config.recipe, r.config.recipe_options.get("probe_fraction")) for r in suite.runs}
    assert got == {("random", "finetune", None), ("random", "lp-ft", 0.25), ("full", "finetune", None),
                   ("full", "lp-ft", 0.25)}
    ids = sorted(r.run_id for r in suite.runs)
    assert "tiny-digits-10-b4-random-lp-ft-s0" in ids and "tiny-digits-all-b4-full-finetune-s0" in ids


def test_without_the_axis_run_ids_are_unchanged_and_set_replaces_it(tmp_path):
    path = write_suite(tmp_path, seeds=[0])
    assert sorted(r.run_id for r in _load(path).runs) == ["tiny-digits-10-b4-coreset-s0", "tiny-digits-10-b4-random-s0"]
    suite = _load(path, sets=["recipe=linear-probe"])
    assert {r.config.recipe for r in suite.runs} == {"linear-probe"}
    assert any("--set recipe=linear-probe replaces the grid axis recipe [finetune]" in n for n in suite.notes)


def test_a_recipe_under_a_selector_is_refused_when_the_suite_sweeps_recipes(tmp_path):
    path = write_suite(tmp_path, recipes=["finetune", "knn"],
                       selectors=["random", {"name": "coreset", "recipe": "knn"}])
    with pytest.raises(UserError, match="the suite's 'recipes' axis sets every run's recipe"):
        _load(path)


def test_a_selector_entrys_label_names_the_method_on_the_board(tmp_path):
    path = write_suite(tmp_path, seeds=[0], selectors=["random", {"name": "random", "label": "random-lp",
                                                                  "recipe": "linear-probe"}])
    labels = {r.run_id: r.config.label for r in _load(path).runs}
    assert labels == {"tiny-digits-10-b4-random-s0": None, "tiny-digits-10-b4-random-lp-s0": "random-lp"}


def test_an_unknown_recipe_or_option_is_refused_at_load_with_the_run_named(tmp_path):
    path = write_suite(tmp_path, seeds=[0], recipes=["linear-prob"])
    with pytest.raises(UserError, match="run tiny-digits-10-b4-random-linear-prob-s0: .*linear-probe"):
        load_suite(path)
    path = write_suite(tmp_path, seeds=[0], recipes=[{"name": "lp-ft", "recipe_options": {"probe_fractoin": 0.5}}])
    with pytest.raises(UserError, match="probe_fraction"):
        load_suite(path)
