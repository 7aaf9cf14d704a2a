import pytest

from vecaf_bench.budget import resolve_label_budget, split_evenly
from vecaf_bench.config import build_config, parse_label_budget
from vecaf_bench.errors import UserError


def test_precedence_yaml_then_flags_then_set(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("selector: coreset\nseed: 3\nbatch_budget: 40\ntrain:\n  lr: 0.5\n")
    cfg = build_config(f, {"seed": 7}, ["batch_budget=12", "train.warmup_steps=2", "selector_options.chunk=64"])
    assert cfg.selector == "coreset"  # from the file
    assert cfg.seed == 7  # flag beats file
    assert cfg.batch_budget == 12  # --set beats both
    assert cfg.train.lr == 0.5 and cfg.train.warmup_steps == 2
    assert cfg.selector_options == {"chunk": 64}


def test_unknown_key_names_the_closest(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("batch_budgett: 3\n")
    with pytest.raises(UserError, match=r"unknown config key 'batch_budgett'.*Did you mean 'batch_budget'"):
        build_config(f)
    with pytest.raises(UserError, match=r"'train.lrr'.*Did you mean 'train.lr'"):
        build_config(None, None, ["train.lrr=1"])


def test_yaml_that_does_not_parse_names_the_line(tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("seed: 1\nselector: [random\n")
    with pytest.raises(UserError, match=r"not valid YAML at line \d+"):
        build_config(f)


def test_wrong_type_names_key_and_value():
    with pytest.raises(UserError, match=r"'batch_budget'.*must be int, got 'many'"):
        build_config(None, None, ["batch_budget=many"])


@pytest.mark.parametrize(
    "value,expected",
    [("100", ("count", 100)), ("5%", ("fraction", 0.05)), ("0.25", ("fraction", 0.25)), ("1.0", ("fraction", 1.0))],
)
def test_label_budget_forms(value, expected):
    assert parse_label_budget(value) == pytest.approx(expected)


@pytest.mark.parametrize("value", ["0", "-3", "0%", "abc", "150%", "2.5"])
def test_bad_label_budgets(value):
    with pytest.raises(UserError, match="label budget"):
        parse_label_budget(value)


def test_label_budget_against_pool():
    assert resolve_label_budget("10%", 1000) == 100
    with pytest.raises(UserError, match=r"larger than the pool \(50 images\)"):
        resolve_label_budget("51", 50)


def test_budget_split_sums_exactly():
    for total in (1, 7, 100, 101):
        for parts in (1, 3, 4):
            if parts <= total:
                split = split_evenly(total, parts)
                assert sum(split) == total and max(split) - min(split) <= 1


def test_batch_budget_zero_refused():
    with pytest.raises(UserError, match="batch budget must be at least 1"):
        build_config(None, {"batch_budget": 0})
