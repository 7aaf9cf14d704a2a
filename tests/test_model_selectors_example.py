"""The model-based example plugin (examples/vecaf-bench-model-selectors: entropy, BADGE).

Imported from its source folder, not installed: the conformance kits run on both selectors,
and (slow) each runs end to end through the CLI with `--plugin`, in rounds: round 0 is picked
by the cold-start selector (`random`), later rounds by the selector from the current model's
outputs, whose forward passes are counted into the selection compute.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from conftest import TINY, summary_of

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "vecaf-bench-model-selectors"
SELECTORS = {"entropy": "Entropy", "badge": "Badge"}


@pytest.fixture
def example(monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    return EXAMPLE


@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_example_selector_passes_the_conformance_kit(example, name):
    from vecaf_bench.testing import check_selector

    module = importlib.import_module(f"vecaf_bench_model_selectors.{name}")
    factory = getattr(module, SELECTORS[name])
    assert factory.capabilities.uses == {"model"} and factory.capabilities.cold_start == "random"
    assert module.vecaf_bench_add_selectors() == {name: factory}
    check_selector(factory, name=name)


def test_example_declares_its_entry_points():
    text = (EXAMPLE / "pyproject.toml").read_text()
    assert 'entropy = "vecaf_bench_model_selectors.entropy"' in text
    assert 'badge = "vecaf_bench_model_selectors.badge"' in text


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SELECTORS))
def test_example_selector_runs_in_rounds_through_the_cli(example, cli, tmp_path, name):
    r = cli("run", "--plugin", f"vecaf_bench_model_selectors.{name}", "--selector", name, "--rounds", "3",
            *TINY, "--out", tmp_path)  # fmt: skip
    assert r.exit_code == 0, r.output
    s = summary_of(tmp_path)
    assert s["selector"] == name
    assert s["uses"] == ["model"]
    assert len(s["rounds"]) == 3
    assert sum(x["picked"] for x in s["rounds"]) == s["label_budget"] == 30
    assert s["rounds"][0]["selector"] == "random"  # the cold start: the head is untrained in round 0
    assert [x["selector"] for x in s["rounds"][1:]] == [name, name]
    assert all(x["selection_forward_batches"] > 0 for x in s["rounds"][1:])  # pool_outputs, counted
    assert s["selection_forward_batches"] > 0
