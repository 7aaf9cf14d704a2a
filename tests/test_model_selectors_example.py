"""The model-based example plugin (examples/vecaf-bench-model-selectors: variation-ratios).

Imported from its source folder, not installed: the conformance kit runs on it, and (slow) it
runs end to end through the CLI with `--plugin`, in rounds: round 0 is picked by the cold-start
selector (`random`), later rounds by variation-ratios from the current model's MC-dropout
outputs, whose forward passes are counted into the selection compute.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import TINY, summary_of

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vecaf-bench-model-selectors"
NAME, MODULE = "variation-ratios", "vecaf_bench_model_selectors.variation_ratios"


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return EXAMPLE


def test_example_selector_passes_the_conformance_kit(example):
    from vecaf_bench_model_selectors.variation_ratios import VariationRatios, vecaf_bench_add_selectors

    from vecaf_bench.testing import check_selector

    caps = VariationRatios.capabilities
    assert caps.uses == {"model"} and caps.cold_start == "random"
    assert vecaf_bench_add_selectors() == {NAME: VariationRatios}
    check_selector(VariationRatios, options={"mc_samples": 4}, name=NAME)


def test_example_declares_its_entry_point_and_no_built_in_name():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert f'{NAME} = "{MODULE}"' in text
    for built_in in ("entropy", "badge"):  # built in now: registering them again would be an error
        assert f'\n{built_in} = "' not in text
        assert not (EXAMPLE / "vecaf_bench_model_selectors" / f"{built_in}.py").exists()


@pytest.mark.slow
def test_example_selector_runs_in_rounds_through_the_cli(example, cli, tmp_path):
    r = cli("run", "--plugin", MODULE, "--selector", NAME, "--rounds", "3", *TINY, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == NAME
    assert s["uses"] == ["model"]
    assert len(s["rounds"]) == 3
    assert sum(x["picked"] for x in s["rounds"]) == s["label_budget"] == 30
    assert s["rounds"][0]["selector"] == "random"  # the cold start: the head is untrained in round 0
    assert [x["selector"] for x in s["rounds"][1:]] == [NAME, NAME]
    assert all(x["selection_forward_batches"] > 0 for x in s["rounds"][1:])  # pool_outputs, counted
    assert all(0 <= x["stats"]["variation_ratio_picked"] <= 1 for x in s["rounds"][1:])
