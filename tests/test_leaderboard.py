"""The leaderboard against hand computations on summary.json files written here, its formats and
plots, the W&B export conversion (no network) and a real offline W&B leaderboard run."""

import csv
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import typer
import yaml
from PIL import Image
from typer.testing import CliRunner
from wandb_records import read_records

from vecaf_bench.board import plots as lp
from vecaf_bench.board import render as br
from vecaf_bench.board import rules as lb
from vecaf_bench.cli import friendly
from vecaf_bench.cli_suite import leaderboard

T_975_DOF1 = 12.706204736174707  # Student t quantiles from a table: t(0.975, 1), t(0.975, 2)
T_975_DOF2 = 4.302652729911275
STEPS = (25, 50, 75, 100)
FIXTURE = Path(__file__).parent / "fixtures" / "wandb_export.json"


def write_run(root: Path, run_id: str, selector: str, dataset: str, budget: int, requested: str, batches: int,
              seed: int, curve, pool: int = 1000, status: str = "finished", options=None, **extra) -> Path:
    d = root / run_id
    d.mkdir(parents=True)
    summary = {
        "run_id": run_id, "status": status, "selector": selector, "uses": extra.pop("uses", []), "dataset": dataset,
        "seed": seed, "label_budget": budget, "label_budget_requested": requested, "batch_budget": batches,
        "steps": curve[-1][0], "pool_size": pool, "test_top1": curve[-1][1], "test_top5": 99.0,
        "curve": [{"step": s, "top1": t, "top5": 99.0, "loss": 1.0} for s, t in curve],
        "selection_seconds": extra.pop("selection_seconds", 0.0),
        "selection_forward_batches": extra.pop("selection_forward_batches", 0), **extra,
    }
    (d / "summary.json").write_text(json.dumps(summary))
    (d / "config.yaml").write_text(yaml.safe_dump({"selector": selector, "selector_options": options or {}}))
    return d


def curve(*top1, steps=STEPS):
    return list(zip(steps, top1, strict=True))


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    # dataset toy: pool 1000, 100 batches, evaluations at 25/50/75/100
    write_run(root, "full-s0", "full", "toy", 1000, "100%", 100, 0, curve(40, 60, 75, 80))
    write_run(root, "full-s1", "full", "toy", 1000, "100%", 100, 1, curve(42, 62, 73, 84))
    def ood(corruption, fog, rendition):
        return {"ood_groups": {"corruption": {"top1": corruption, "top5": 70.0, "splits": 1}},
                "ood": {"corruption:fog:3": {"top1": fog, "group": "corruption"},
                        "imagenet-r": {"top1": rendition, "group": None}}}

    ood0, ood1 = ood(40.0, 35.0, 30.0), ood(44.0, 39.0, 34.0)
    write_run(root, "aft-s0", "activeft", "toy", 50, "5%", 100, 0, curve(60, 82, 85, 86), selection_seconds=2.0, **ood0)
    write_run(root, "aft-s1", "activeft", "toy", 50, "5%", 100, 1, curve(58, 80, 83, 84), selection_seconds=2.5, **ood1)
    write_run(root, "aft-s2", "activeft", "toy", 50, "5%", 100, 2, curve(62, 83, 84, 88), selection_seconds=3.0)
    write_run(root, "rnd-s0", "random", "toy", 50, "5%", 100, 0, curve(50, 70, 78, 80))
    write_run(root, "rnd-s1", "random", "toy", 50, "5%", 100, 1, curve(55, 72, 80, 83))
    write_run(root, "rnd-s2", "random", "toy", 50, "5%", 100, 2, curve(52, 69, 77, 79))
    write_run(root, "kc-s0", "coreset", "toy", 50, "5%", 100, 0, curve(45, 65, 70, 75))
    write_run(root, "aft-tau-s0", "activeft", "toy", 50, "5%", 100, 0, curve(50, 60, 70, 71), options={"tau": 0.1})
    write_run(root, "rnd50-s0", "random", "toy", 50, "5%", 50, 0, curve(50, 66, steps=(25, 50)))
    write_run(root, "rnd50-s1", "random", "toy", 50, "5%", 50, 1, curve(52, 70, steps=(25, 50)))
    write_run(root, "rnd-s3-interrupted", "random", "toy", 50, "5%", 100, 3, curve(10, 20, steps=(25, 50)),
              status="interrupted")
    # dataset toy2: pool 500, no full run, two label budgets (a budget sweep)
    for sel, uses, fwd in (("random", [], 0), ("vecaf", ["labels", "model", "text"], 126)):
        for budget, req, base in ((10, "2%", 40), (25, "5%", 50)):
            bonus = 5 if sel == "vecaf" else 0
            bonus += 2 if (sel, budget) == ("vecaf", 25) else 0
            for seed in (0, 1):
                write_run(root / "toy2", f"{sel}-{budget}-s{seed}", sel, "toy2", budget, req, 40, seed,
                          curve(base - 10 + bonus + 2 * seed, base + bonus + 4 * seed, steps=(20, 40)), pool=500,
                          uses=uses, selection_forward_batches=fwd + 4 * seed)
    return root


def row(board, name, dataset="toy", budget=50, batches=100):
    found = [r for r in board.rows if (r.name, r.dataset, r.label_budget, r.batch_budget) ==
             (name, dataset, budget, batches)]
    assert len(found) == 1, [(r.name, r.dataset, r.label_budget, r.batch_budget) for r in board.rows]
    return found[0]


def crossing(s0, a0, s1, a1, target):
    """The interpolated crossing, written out: s0 + (target - a0) / (a1 - a0) * (s1 - s0)."""
    return s0 + (target - a0) / (a1 - a0) * (s1 - s0)


def test_numbers_equal_a_hand_computation(runs):
    """Old summaries (no identity, val, best or compute): the board reads the test curve and says so."""
    records, unfinished = lb.load_records(runs)
    assert unfinished == 1 and len(records) == 20
    board = lb.build_board(records)

    # no validation split anywhere: the test curve decides. target: 0.95 x full's best test top-1 at its
    # longest batch budget (100): best of seed 0 is 80, of seed 1 84 -> 0.95 x 82 = 77.9; none on toy2
    assert board.curve_sources == {"toy": "test", "toy2": "test"}
    t = board.targets["toy"]
    assert t.value == pytest.approx(0.95 * 82.0) and t.reference == "full" and t.reference_batches == 100
    assert t.text == "target 77.90 = 0.95 x full's best test top-1 at 100 batches (82.00, mean of 2 seed(s))"
    assert "toy2" not in board.targets

    aft = row(board, "activeft")
    assert aft.n == 3 and aft.seeds == [0, 1, 2] and not aft.incomplete
    assert aft.mean == pytest.approx(86.0)
    s = math.sqrt(((86 - 86) ** 2 + (84 - 86) ** 2 + (88 - 86) ** 2) / 2)  # = 2
    assert aft.ci == pytest.approx(T_975_DOF2 * s / math.sqrt(3))  # 4.968
    assert aft.best_mean == pytest.approx(86.0)  # the best test point is the last one for every seed
    # interpolated first crossings of 77.9: every activeft seed crosses between steps 25 and 50
    tgt = 0.95 * 82
    hits = [crossing(25, 60, 50, 82, tgt), crossing(25, 58, 50, 80, tgt), crossing(25, 62, 50, 83, tgt)]
    assert list(aft.crossings.values()) == pytest.approx(hits)
    assert aft.batches_to_target == pytest.approx(np.mean(hits))
    # full is read by the same rule, per seed (no mean-curve special case)
    full = row(board, "full", budget=1000)
    full_hits = [crossing(75, 75, 100, 80, 0.95 * 82), crossing(75, 73, 100, 84, 0.95 * 82)]
    assert full.reference and full.whole_pool and full.batches_to_target == pytest.approx(np.mean(full_hits))
    assert full.ci == pytest.approx(T_975_DOF1 * np.std([80, 84], ddof=1) / math.sqrt(2))
    assert full.speedup == 1.0 and full.speedup_low is None
    assert aft.speedup == pytest.approx(np.mean(full_hits) / np.mean(hits))
    assert aft.speedup_reference == "full @100 batches"
    assert aft.ood == {"corruption": pytest.approx(42.0), "imagenet-r": pytest.approx(32.0)}
    assert board.ood_names == ["corruption", "imagenet-r"]  # fog:3 is inside the corruption group
    assert aft.selection_seconds == pytest.approx(2.5) and aft.uses == []

    rnd = row(board, "random")
    assert rnd.mean == pytest.approx((80 + 83 + 79) / 3)
    assert rnd.ci == pytest.approx(T_975_DOF2 * np.std([80, 83, 79], ddof=1) / math.sqrt(3))
    rnd_hits = [crossing(50, 70, 75, 78, 77.9), crossing(50, 72, 75, 80, 77.9), crossing(75, 77, 100, 79, 77.9)]
    assert list(rnd.crossings.values()) == pytest.approx(rnd_hits)
    assert rnd.batches_to_target == pytest.approx(np.mean(rnd_hits)) and rnd.reached == 3

    # paired: activeft - random over seeds 0, 1, 2 = 6, 1, 9
    d = np.array([86 - 80, 84 - 83, 88 - 79], dtype=float)
    p = aft.vs["random"].final
    assert p.seeds == (0, 1, 2) and p.mean == pytest.approx(d.mean())
    half = T_975_DOF2 * d.std(ddof=1) / math.sqrt(3)
    assert (p.low, p.high) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
    assert p.p == pytest.approx(0.25)  # exact Wilcoxon, n = 3, all differences positive: 2 / 2**3
    assert "random" not in rnd.vs  # never compared with itself
    assert rnd.vs["reference"].name == "activeft" and rnd.vs["reference"].final.mean == pytest.approx(-d.mean())

    kc = row(board, "coreset")  # one seed of the setting's three: incomplete, never bold
    assert kc.n == 1 and kc.ci is None and kc.mean == 75.0 and kc.incomplete and not kc.best_final
    assert br._btt_text(kc) == "not reached (0/1)"
    tau = row(board, "activeft {tau=0.1}")  # other selector options: another row, paired with plain activeft
    assert tau.n == 1 and tau.vs["reference"].name == "activeft" and tau.vs["reference"].final.low is None
    assert aft.best_final and not rnd.best_final

    rnd50 = row(board, "random", batches=50)  # full never ran 50 batches: the speed-up would use full @100
    assert rnd50.mean == pytest.approx(68.0) and rnd50.batches_to_target is None and rnd50.reached == 0
    assert rnd50.speedup_reference == "full @100 batches" and not rnd50.best_final  # a setting of one row

    vec = row(board, "vecaf", dataset="toy2", budget=25, batches=40)
    assert vec.mean == pytest.approx(((57) + (61)) / 2) and vec.target is None and vec.batches_to_target is None
    assert vec.selection_forward_batches == pytest.approx(128) and vec.uses == ["labels", "model", "text"]
    # vecaf - random differences 7, 7: no spread, so no interval and no mark (and Wilcoxon's exact p is 0.5)
    assert vec.vs["random"].final.mean == pytest.approx(7.0) and vec.vs["random"].final.low is None
    assert not vec.vs["random"].final.excludes_zero and vec.vs["random"].final.p == pytest.approx(0.5)

    # AUBC on toy2 (budgets 10 and 25): the mean of the two final accuracies per seed (a trapezoid)
    aubc = {a.name: a for a in board.aubc}
    assert aubc["random"].per_seed == {0: pytest.approx((40 + 50) / 2), 1: pytest.approx((44 + 54) / 2)}
    assert aubc["vecaf"].mean == pytest.approx(np.mean([(45 + 57) / 2, (49 + 61) / 2]))

    # sorted by dataset, budget, batches, then mean accuracy descending
    order = [(r.dataset, r.label_budget, r.batch_budget, r.name) for r in board.rows]
    assert order[:6] == [("toy", 50, 50, "random"), ("toy", 50, 100, "activeft"), ("toy", 50, 100, "random"),
                         ("toy", 50, 100, "coreset"), ("toy", 50, 100, "activeft {tau=0.1}"),
                         ("toy", 1000, 100, "full")]
    assert any("no validation split: targets read off the test split" in n for n in board.notes)


def test_explicit_target(runs):
    board = lb.build_board(lb.load_records(runs)[0], target=70.0)
    assert board.targets["toy"].value == 70.0 and board.targets["toy2"].value == 70.0
    full = row(board, "full", budget=1000)  # seeds: 60 @50 -> 75 @75, 62 @50 -> 73 @75
    full_hits = [crossing(50, 60, 75, 75, 70), crossing(50, 62, 75, 73, 70)]
    assert full.batches_to_target == pytest.approx(np.mean(full_hits))
    aft = row(board, "activeft")
    aft_hits = [crossing(25, 60, 50, 82, 70), crossing(25, 58, 50, 80, 70), crossing(25, 62, 50, 83, 70)]
    assert aft.batches_to_target == pytest.approx(np.mean(aft_hits))
    assert aft.speedup == pytest.approx(np.mean(full_hits) / np.mean(aft_hits))
    rnd = row(board, "random")  # 50 -> 70 reaches 70 exactly at 50; 55 -> 72; 69 -> 77 between 50 and 75
    expected = [50, crossing(25, 55, 50, 72, 70), crossing(50, 69, 75, 77, 70)]
    assert list(rnd.crossings.values()) == pytest.approx(expected)
    vec = row(board, "vecaf", dataset="toy2", budget=25, batches=40)  # toy2 has no full run: no speed-up
    assert vec.speedup is None and vec.speedup_reference is None


def test_formats(runs):
    board = lb.build_board(lb.load_records(runs)[0])
    md = lb.to_markdown(board)
    assert ("| toy | 50 (5%) | 100 | activeft | features | 3 | **86.00 ± 4.97** | **86.00 ± 4.97** | +5.33 ± 10.04 | - "
            "| 45.6 ± 4.6 | 1.92x [") in md
    assert "| toy | 50 (5%) | 100 | coreset | features | 1/3 seeds | 75.00 (1/3 seeds) |" in md
    assert "**75.00" not in md and "**68.00" not in md  # incomplete rows and settings of one row have no best
    assert "labels, model, text" in md
    assert "- toy: target 77.90 = 0.95 x full's best test top-1 at 100 batches (82.00, mean of 2 seed(s))" in md
    assert "| toy | 50 (5%) | 100 | activeft | random | final | 3 | +5.33 | [-4.71, +15.37] | 0.2500 |" in md
    assert "| toy2 | 40 | random | 10, 25 | 2 |" in md  # the AUBC table
    rows = list(csv.DictReader(io.StringIO(lb.to_csv(board))))
    first = rows[1]
    assert first["method"] == "activeft" and float(first["mean_top1"]) == pytest.approx(86.0)
    assert float(first["ci95"]) == pytest.approx(T_975_DOF2 * 2 / math.sqrt(3))
    assert float(first["ood_imagenet-r"]) == pytest.approx(32.0)
    assert float(first["vs_random_final_p"]) == pytest.approx(0.25) and first["incomplete"] == "False"
    data = json.loads(lb.to_json(board))
    assert data["targets"]["toy"]["top1"] == pytest.approx(77.9) and data["targets"]["toy"]["curve"] == "test"
    assert data["rows"][2]["batches_to_target"] is not None and data["rows"][3]["reached"] == 0
    assert data["rows"][1]["per_seed"]["1"]["crossing"] == pytest.approx(crossing(25, 58, 50, 80, 77.9))
    assert {p["against"] for p in data["paired"]} == {"random", "reference"} and len(data["aubc"]) == 2


def _check_png(path: Path, min_kb: int = 15) -> None:
    assert path.is_file() and path.stat().st_size > min_kb * 1024, path
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 300 and img.shape[1] > 400
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 50  # lines, bands, text: not one colour


def test_plots(runs, tmp_path):
    board = lb.build_board(lb.load_records(runs)[0])
    paths = lp.write_plots(board, tmp_path / "plots" / "board.png")
    assert paths == [tmp_path / "plots" / "board.png", tmp_path / "plots" / "board-budgets.png"]
    for p in paths:
        _check_png(p)
    # one budget only: no sweep plot
    one = lb.build_board([r for r in lb.load_records(runs)[0] if r.dataset == "toy"])
    assert lp.write_plots(one, tmp_path / "one.png") == [tmp_path / "one.png"]


@pytest.fixture
def app():
    a = typer.Typer(pretty_exceptions_enable=False)
    a.command()(friendly(leaderboard))
    a.command("noop")(lambda: None)  # two commands: typer keeps the command name
    return a


def test_cli(app, runs, tmp_path):
    cli = CliRunner()
    r = cli.invoke(app, ["leaderboard", str(runs), "--format", "markdown", "--plot", str(tmp_path / "p.png")])
    assert r.exit_code == 0, r.output
    assert "**86.00 ± 4.97**" in r.output and (tmp_path / "p.png").is_file()
    r = cli.invoke(app, ["leaderboard", str(runs), "--format", "json", "--target", "70"])
    assert r.exit_code == 0 and json.loads(r.output)["targets"]["toy"]["top1"] == 70.0
    r = cli.invoke(app, ["leaderboard", str(runs), "--format", "json", "--target-fraction", "0.5", "--reference",
                         "coreset"])
    data = json.loads(r.output)
    assert r.exit_code == 0 and data["targets"]["toy"]["top1"] == pytest.approx(41.0) and data["reference"] == "coreset"
    aft = next(x for x in data["rows"] if x["method"] == "activeft" and x["batch_budget"] == 100)
    assert aft["vs_reference_method"] == "coreset" and aft["vs_reference_final_diff"] == pytest.approx(86 - 75 + 0.0)
    r = cli.invoke(app, ["leaderboard", str(runs), "--target-fraction", "1.5"])
    assert r.exit_code == 2 and "--target-fraction must be in (0, 1]" in r.output
    r = cli.invoke(app, ["leaderboard", str(runs)])
    assert r.exit_code == 0 and "activeft" in r.output
    r = cli.invoke(app, ["leaderboard", str(runs), "--format", "markdwn"])
    assert r.exit_code == 2 and "Did you mean 'markdown'?" in r.output
    (tmp_path / "empty").mkdir()
    r = cli.invoke(app, ["leaderboard", str(tmp_path / "empty")])
    assert r.exit_code == 2 and "no finished runs" in r.output
    r = cli.invoke(app, ["leaderboard", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "does not exist" in r.output


def test_cli_reads_runs_folder_by_default(app, runs, tmp_path, monkeypatch):
    """`vecaf-bench suite S.yaml` then plain `vecaf-bench leaderboard`: both default to runs/."""
    cli = CliRunner()
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    r = cli.invoke(app, ["leaderboard"])
    assert r.exit_code == 2 and "no 'runs' folder here" in r.output
    (here / "runs").symlink_to(runs, target_is_directory=True)
    r = cli.invoke(app, ["leaderboard", "--format", "markdown"])
    assert r.exit_code == 0 and "**86.00 ± 4.97**" in r.output


class _Summary(dict):
    """wandb's run.summary: keys() and [] (it is not a plain dict)."""


class _Run:
    def __init__(self, d):
        self.id, self.name, self.state, self.job_type = d["id"], d["name"], d["state"], d["job_type"]
        self.summary, self.config, self._history = _Summary(d["summary"]), d["config"], d["history"]

    def scan_history(self, keys):
        return [h for h in self._history if all(k in h for k in keys)]


class _Api:
    def __init__(self, export):
        self.export = export

    def runs(self, path):
        assert path == "ent/proj"
        return [_Run(d) for d in self.export]


def test_wandb_export_becomes_the_records_summary_json_gives(runs):
    export = json.loads(FIXTURE.read_text())
    rec = lb.record_from_wandb(export[0]["summary"], export[0]["config"], export[0]["history"])
    local = next(r for r in lb.load_records(runs)[0] if r.source.endswith("aft-s0"))
    for key in ("selector", "dataset", "label_budget", "label_budget_requested", "batch_budget", "seed", "top1",
                "curve", "ood", "pool_size"):
        assert getattr(rec, key) == getattr(local, key), key
    assert rec.selection_seconds == 2.25 and rec.uses is None and rec.options == {}
    assert lb.record_from_wandb(export[2]["summary"], export[2]["config"], export[2]["history"]) is None  # crashed
    records = lb.records_from_wandb("ent/proj", api=_Api(export))
    assert [(r.selector, r.seed) for r in records] == [("activeft", 0), ("full", 0)]  # not the leaderboard run
    lb.fill_uses(records)
    assert records[0].uses == [] and records[1].whole_pool
    board = lb.build_board(records)
    assert board.targets["toy"].value == pytest.approx(0.95 * 80.0)  # full's best test top-1 (W&B: no val)
    # the fixture's full config lacks the train keys activeft's has: they differ, so the name says which
    aft = next(r for r in board.rows if r.selector == "activeft")
    assert aft.name == "activeft {rounds=1, train.lr=0.02, train.momentum=0.9, train.opt=sgd}"
    assert aft.batches_to_target == pytest.approx(crossing(25, 60, 50, 82, 0.95 * 80))
    assert any(n.startswith("read from W&B") for n in board.notes)
    assert any("no validation split: targets read off the test split" in n for n in board.notes)
    with pytest.raises(lb.UserError, match="ENTITY/PROJECT"):
        lb.records_from_wandb("just-a-project", api=_Api(export))


def test_offline_wandb_leaderboard_run(runs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    board = lb.build_board(lb.load_records(runs)[0])
    plots = lp.write_plots(board, tmp_path / "lb.png")
    run = lb.log_to_wandb(board, plots, "offline", runs, project="vecaf-bench-test", name="leaderboard-test")
    files = list((runs / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1 and run.id in files[0].name
    records = read_records(files[0])
    meta = next(rec.run for rec in records if rec.WhichOneof("record_type") == "run")
    assert meta.job_type == "leaderboard" and meta.display_name == "leaderboard-test"
    logged: dict = {}  # media are logged as nested items: ("leaderboard", "_type") -> "table-file"
    for rec in records:
        if rec.WhichOneof("record_type") == "history":
            for i in rec.history.item:
                *parents, last = [i.key] if i.key else list(i.nested_key)
                node = logged
                for p in parents:
                    node = node.setdefault(p, {})
                node[last] = json.loads(i.value_json)
    assert logged["leaderboard"]["_type"] == "table-file" and logged["leaderboard"]["nrows"] == len(board.rows)
    assert logged["plots/lb"]["_type"] == "image-file" and logged["plots/lb-budgets"]["_type"] == "image-file"
    table_files = list((runs / "wandb").glob("offline-run-*/files/media/table/leaderboard_*.table.json"))
    table = json.loads(table_files[0].read_text())
    assert table["columns"][:3] == ["dataset", "selector", "label_budget"] and len(table["data"]) == len(board.rows)
    # the leaderboard's own files are not runs: reading the folder again gives the same board
    assert len(lb.load_records(runs)[0]) == 20
