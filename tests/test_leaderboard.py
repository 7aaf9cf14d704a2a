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

from vecaf_bench import leaderboard as lb
from vecaf_bench import leaderboard_plots as lp
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


def row(board, selector, dataset="toy", budget=50, batches=100):
    found = [r for r in board.rows if (r.selector, r.dataset, r.label_budget, r.batch_budget) ==
             (selector, dataset, budget, batches)]
    assert len(found) == 1, [(r.selector, r.dataset, r.label_budget, r.batch_budget) for r in board.rows]
    return found[0]


def test_numbers_equal_a_hand_computation(runs):
    records, unfinished = lb.load_records(runs)
    assert unfinished == 1 and len(records) == 20
    board = lb.build_board(records)

    # target: full's final mean on toy = (80 + 84) / 2; none on toy2 (no full run)
    assert board.targets["toy"] == (82.0, "full's final mean over 2 seed(s)")
    assert "toy2" not in board.targets
    # matched batches: the steps every toy run has are 25 and 50 (the 50-batch runs stop there)
    assert board.matched_steps == {"toy": 50, "toy2": 40}

    aft = row(board, "activeft")
    assert aft.n == 3 and aft.seeds == [0, 1, 2]
    assert aft.mean == pytest.approx(86.0)
    s = math.sqrt(((86 - 86) ** 2 + (84 - 86) ** 2 + (88 - 86) ** 2) / 2)  # = 2
    assert aft.ci == pytest.approx(T_975_DOF2 * s / math.sqrt(3))  # 4.968
    assert aft.matched_top1 == pytest.approx((82 + 80 + 83) / 3)
    # first step >= 82: seed 0 at 50, seed 1 at 75 (83), seed 2 at 50
    assert aft.batches_to_target == pytest.approx((50 + 75 + 50) / 3)
    # full's mean curve 41, 61, 74, 82 reaches 82 at step 100
    assert board.reference_steps["toy"] == 100
    assert aft.speedup == pytest.approx(100 / ((50 + 75 + 50) / 3))
    assert aft.ood == {"corruption": pytest.approx(42.0), "imagenet-r": pytest.approx(32.0)}
    assert board.ood_names == ["corruption", "imagenet-r"]  # fog:3 is inside the corruption group
    assert aft.selection_seconds == pytest.approx(2.5) and aft.uses == []

    rnd = row(board, "random")
    assert rnd.mean == pytest.approx((80 + 83 + 79) / 3)
    assert rnd.ci == pytest.approx(T_975_DOF2 * np.std([80, 83, 79], ddof=1) / math.sqrt(3))
    assert rnd.batches_to_target is None and rnd.reached == 1 and rnd.speedup is None  # seeds 0 and 2 never reach 82
    assert lb._btt_text(rnd) == "not reached (1/3)"

    kc = row(board, "coreset")
    assert kc.n == 1 and kc.ci is None and kc.mean == 75.0 and lb._btt_text(kc) == "not reached (0/1)"
    assert row(board, "activeft {tau=0.1}").n == 1  # other selector options: another selector

    full = row(board, "full", budget=1000)
    assert full.reference and full.whole_pool
    assert full.ci == pytest.approx(T_975_DOF1 * np.std([80, 84], ddof=1) / math.sqrt(2))
    assert full.batches_to_target == 100 and full.speedup == pytest.approx(1.0)
    assert full.matched_top1 == pytest.approx(61.0)

    rnd50 = row(board, "random", batches=50)
    assert rnd50.mean == pytest.approx(68.0) and rnd50.matched_top1 == pytest.approx(68.0)

    vec = row(board, "vecaf", dataset="toy2", budget=25, batches=40)
    assert vec.mean == pytest.approx(((57) + (61)) / 2) and vec.target is None and vec.batches_to_target is None
    assert vec.selection_forward_batches == pytest.approx(128) and vec.uses == ["labels", "model", "text"]

    # sorted by dataset, budget, batches, then mean accuracy descending
    order = [(r.dataset, r.label_budget, r.batch_budget, r.selector) for r in board.rows]
    assert order[:6] == [("toy", 50, 50, "random"), ("toy", 50, 100, "activeft"), ("toy", 50, 100, "random"),
                         ("toy", 50, 100, "coreset"), ("toy", 50, 100, "activeft {tau=0.1}"),
                         ("toy", 1000, 100, "full")]


def test_explicit_target(runs):
    board = lb.build_board(lb.load_records(runs)[0], target=70.0)
    assert board.targets["toy"] == (70.0, "--target") and board.targets["toy2"] == (70.0, "--target")
    assert board.reference_steps["toy"] == 75  # full's mean curve 41, 61, 74, 82: first >= 70 at step 75
    aft = row(board, "activeft")
    assert aft.batches_to_target == 50 and aft.speedup == pytest.approx(75 / 50)
    rnd = row(board, "random")  # 70 at 50, 72 at 50, 69 -> 77 at 75
    assert rnd.batches_to_target == pytest.approx((50 + 50 + 75) / 3)
    assert rnd.speedup == pytest.approx(75 / ((50 + 50 + 75) / 3))


def test_formats(runs):
    board = lb.build_board(lb.load_records(runs)[0])
    md = lb.to_markdown(board)
    assert "| toy | 50 (5%) | 100 | activeft | features | 3 | **86.00 ± 4.97** | 81.67 @50 | 58 | 1.71x |" in md
    assert "| toy | 50 (5%) | 100 | random | features | 3 | 80.67 ± 5.17 | 70.33 @50 | not reached (1/3) | - |" in md
    assert ("| toy | all (1000) | 100 | full | features | 2 | 82.00 ± 25.41 | 61.00 @50 | 100 (mean curve) | 1.00x |"
            in md)
    assert "**68.00" not in md  # a cell of one row has no best
    assert "labels, model, text" in md
    assert "toy: target 82.00% (full's final mean over 2 seed(s)); matched batches: step 50" in md
    rows = list(csv.DictReader(io.StringIO(lb.to_csv(board))))
    first = rows[1]
    assert first["selector"] == "activeft" and float(first["mean_top1"]) == pytest.approx(86.0)
    assert float(first["ci95"]) == pytest.approx(T_975_DOF2 * 2 / math.sqrt(3))
    assert float(first["ood_imagenet-r"]) == pytest.approx(32.0)
    data = json.loads(lb.to_json(board))
    assert data["targets"]["toy"]["top1"] == 82.0 and data["matched_steps"]["toy"] == 50
    assert data["rows"][2]["batches_to_target"] is None and data["rows"][2]["reached"] == 1


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
    assert board.targets["toy"][0] == 80.0 and row(board, "activeft").batches_to_target == 50
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
