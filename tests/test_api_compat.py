"""A plugin written against the API before 1.0 keeps working, with a warning that says what to
write instead; what can no longer work fails with one paragraph naming the fix. And the
1.0 contract itself: undeclared reads refused, results written by the core whatever the trackers."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
from conftest import TINY, run_dirs, summary_of

from vecaf_bench.api import Capabilities, UndeclaredUse, VecafBenchDeprecationWarning
from vecaf_bench.run.selection_round import build_context

LEGACY = '''
import numpy as np
from vecaf_bench.hookspecs import hookimpl          # before 1.0
from vecaf_bench.selection import SelectionContext  # before 1.0


class MaxLoss:
    uses = frozenset({"labels", "model"})            # before 1.0: loose attributes

    def select(self, ctx: SelectionContext, count):
        remaining = np.setdiff1d(np.arange(ctx.pool_size), ctx.selected)
        if ctx.per_sample_loss is None or ctx.trained_steps == 0:
            self.round_stats = {"mode": "random"}
            return ctx.rng().choice(remaining, size=count, replace=False)
        loss = ctx.per_sample_loss(remaining)
        self.round_stats = {"mode": "loss", "max": float(loss.max())}
        return remaining[np.argsort(-loss, kind="stable")[:count]]


class CallsModel:
    uses = frozenset({"model"})

    def select(self, ctx, count):
        import torch
        ctx.model(torch.from_numpy(np.array(ctx.features)))  # features are not images
        return np.arange(count)


@hookimpl
def vecaf_bench_add_selectors():
    return {"maxloss_legacy": MaxLoss, "calls_model": CallsModel}
'''


@pytest.fixture
def legacy_plugin(tmp_path, monkeypatch):
    (tmp_path / "legacy_sel.py").write_text(textwrap.dedent(LEGACY))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "legacy_sel"


@pytest.mark.slow
def test_a_pre_1_0_selector_runs_with_deprecation_warnings(cli, tmp_path, legacy_plugin):
    out = tmp_path / "out"
    with pytest.warns(VecafBenchDeprecationWarning) as caught:
        r = cli("run", *TINY, "--plugin", legacy_plugin, "--selector", "maxloss_legacy", "--rounds", "2", "--out", out)
    assert r.exit_code == 0, r.output
    said = " ".join(str(w.message) for w in caught)
    assert "from vecaf_bench.api import hookimpl" in said
    assert "capabilities = Capabilities(uses=" in said
    assert "Selection(indices, stats=" in said
    s = summary_of(out)
    assert s["uses"] == ["labels", "model"] and len(s["rounds"]) == 2
    assert s["rounds"][0]["stats"] == {"mode": "random"}
    assert s["rounds"][1]["stats"]["mode"] == "loss" and s["rounds"][1]["selection_forward_batches"] > 0


@pytest.mark.slow
def test_feeding_features_to_the_model_is_one_paragraph_naming_the_plugin(cli, tmp_path, legacy_plugin):
    r = cli("run", *TINY, "--plugin", legacy_plugin, "--selector", "calls_model", "--out", tmp_path / "o")
    assert r.exit_code == 2
    assert "selector 'calls_model'" in r.output and "failed in select()" in r.output
    assert "Traceback" not in r.output


def test_the_kit_catches_features_fed_to_the_model(legacy_plugin):
    from legacy_sel import CallsModel

    from vecaf_bench.testing import check_selector

    with pytest.raises(AssertionError, match="selector 'CallsModel' failed check 'round 0': select\\(\\) raised"):
        check_selector(CallsModel)


def _ctx(uses):
    f = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    return build_context(selector="s", capabilities=Capabilities(uses=uses), features=f,
                         labels=np.arange(10) % 2 if "labels" in uses else None, text=object(),
                         outputs=lambda idx, what, mc, p: ({"logits": np.zeros((len(idx), 2), np.float32)}, 1))


@pytest.mark.parametrize(
    "uses, read, need",
    [
        ((), lambda c: c.labels, "labels"),
        ((), lambda c: c.text, "text"),
        ((), lambda c: c.pool_outputs(), "model"),
        (("model",), lambda c: c.per_sample_loss(), "labels"),
        (("labels",), lambda c: c.per_sample_loss(), "model"),
    ],
)
def test_undeclared_reads_are_refused_with_what_to_declare(uses, read, need):
    with pytest.raises(UndeclaredUse, match=f"needs '{need}'.*capabilities = Capabilities\\(uses="):
        read(_ctx(uses))


def test_the_context_is_read_only():
    ctx = _ctx(("labels", "model"))
    with pytest.raises(ValueError, match="read-only"):
        ctx.features[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        ctx.labels[0] = 3
    with pytest.raises(AttributeError):
        ctx.seed = 4  # type: ignore[misc]


def test_model_outputs_are_cached_for_the_round_and_counted():
    calls = []

    def outputs(idx, what, mc, p):
        calls.append((len(idx), sorted(what)))
        return {"logits": np.tile([[0.0, 1.0]], (len(idx), 1)).astype(np.float32)}, 2

    f = np.zeros((6, 3), np.float32)
    ctx = build_context(selector="s", capabilities=Capabilities(uses={"model"}), features=f, outputs=outputs)
    a = ctx.pool_outputs(what=("probs",))
    b = ctx.pool_outputs(indices=[4, 1], what=("logits", "probs"))
    assert calls == [(6, ["logits"])] and ctx.forward_batches == 2
    assert np.allclose(a.probs.sum(1), 1) and a.logits is None and b.embeddings is None
    assert np.array_equal(b.probs, a.probs[[4, 1]]) and b.logits.shape == (2, 2)


@pytest.mark.slow
def test_results_are_written_without_the_local_tracker(cli, tmp_path):
    """Results belong to the core: a run with only W&B (disabled here) still has its summary,
    events and selection, so resume and suite skipping work."""
    out = tmp_path / "o"
    r = cli("run", *TINY, "--set", "trackers=[wandb]", "--out", out)
    assert r.exit_code == 0, r.output
    d = run_dirs(out)[0]
    assert json.loads((d / "summary.json").read_text())["status"] == "finished"
    assert (d / "selected.json").is_file() and (d / "events.jsonl").is_file()
    assert not (d / "curve.csv").exists()
