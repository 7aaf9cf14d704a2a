"""`leaderboard --expected SUITE.yaml`: the published numbers of a paper suite against the runs, cell
by cell (within the tolerance, below, above, not run), and the `expected` section checked when the
suite loads. The runs are summaries written by test_leaderboard_rules' `write` with known finals."""

import json
import re
from pathlib import Path

import pytest
import typer
import yaml
from test_leaderboard_rules import write
from typer.testing import CliRunner

from vecaf_bench.board.expected import parse_expected
from vecaf_bench.cli import friendly
from vecaf_bench.cli_suite import leaderboard
from vecaf_bench.errors import UserError
from vecaf_bench.suite.grid import load_suite

ROOT = Path(__file__).resolve().parents[1]
FINALS = {"random": [89.0, 90.0, 91.0], "activeft": [93.0, 95.0, 97.0]}  # finals: means 90 and 95

EXPECTED = {
    "source": "a toy table",
    "metric": "final",
    "tolerance": 3.0,
    "datasets": {"toy": {"label_budgets": [50, 100], "rows": {
        "random": [88.0, 70.0],  # 50: 90 - 88 = +2.0 within 3; 100: not run
        "activeft": {"published_as": "ActiveFT", "top1": [99.5, None], "tolerance": 4.0, "why": "a known gap"},
        "coreset": [80.0, 81.0],  # never run
    }}},
    "not_implemented": [{"published_as": "ALFA-Mix", "why": "not here"}],
}


def _app() -> typer.Typer:
    app = typer.Typer(pretty_exceptions_enable=False)
    app.command()(friendly(leaderboard))
    app.command("noop")(lambda: None)
    return app


@pytest.fixture
def board_dir(tmp_path):
    runs = tmp_path / "runs"
    for sel, finals in FINALS.items():
        for seed, final in enumerate(finals):
            write(runs, sel, seed, [60.0, 70.0, 80.0, final + 3], test=[55.0, 65.0, 75.0, final])
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"expected": EXPECTED}))
    return runs, suite


def _rows(markdown: str) -> dict[str, list[str]]:
    part = markdown.split("## Against the published numbers", 1)[1]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("| toy")]
    return {f"{c[2]}@{c[1]}": c for c in cells}


def test_markdown_says_which_cells_reproduce(board_dir):
    runs, suite = board_dir
    r = CliRunner().invoke(_app(), ["leaderboard", str(runs), "--format", "markdown", "--expected", str(suite)])
    assert r.exit_code == 0, r.output
    rows = _rows(r.output)
    random50 = rows["random@50"]
    assert random50[3] == "88.0" and random50[5].startswith("90.0 ± ") and random50[7] == "+2.0"
    assert random50[6] == "3" and random50[-1] == "within"
    aft = rows["activeft (ActiveFT)@50"]
    assert aft[4] == "± 4" and aft[7] == "-4.5" and aft[-1] == "below"  # 95 - 99.5, past its tolerance
    assert rows["random@100"][-1] == "not run" and rows["coreset@50"][-1] == "not run"
    assert "activeft (ActiveFT)@100" not in rows  # null: no published number, no cell
    assert "1 of 5 published cells reproduced within their tolerance (1 below, 0 above, 3 not run)" in r.output
    assert "tolerance ± 4: a known gap" in r.output and "not implemented here: ALFA-Mix: not here" in r.output


def test_json_and_terminal_carry_the_verdicts(board_dir, tmp_path):
    runs, suite = board_dir
    r = CliRunner().invoke(_app(), ["leaderboard", str(runs), "--format", "json", "--expected", str(suite)])
    assert r.exit_code == 0, r.output
    cells = json.loads(r.output)["expected"]["cells"]
    got = {(c["selector"], c["label_budget"]): (c["verdict"], c["gap"]) for c in cells}
    assert got[("random", "50")] == ("within", pytest.approx(2.0))
    assert got[("activeft", "50")] == ("below", pytest.approx(-4.5))
    r = CliRunner().invoke(_app(), ["leaderboard", str(runs), "--expected", str(suite)])
    assert r.exit_code == 0 and "against the published numbers" in r.output and "within" in r.output
    out = tmp_path / "board.md"
    r = CliRunner().invoke(_app(), ["leaderboard", str(runs), "--expected", str(suite), "-o", str(out)])
    assert r.exit_code == 0 and "## Against the published numbers" in out.read_text()


def test_bad_expected_input_is_a_clear_error(board_dir, tmp_path):
    runs, suite = board_dir
    r = CliRunner().invoke(_app(), ["leaderboard", str(runs), "--format", "csv", "--expected", str(suite)])
    assert r.exit_code == 2 and "CSV" in r.output and "Traceback" not in r.output
    plain = tmp_path / "plain.yaml"
    plain.write_text("name: x\n")
    r = CliRunner().invoke(_app(), ["leaderboard", str(runs), "--expected", str(plain)])
    assert r.exit_code == 2 and "no 'expected' section" in r.output
    with pytest.raises(UserError, match=r"row 'kmean' is not a selector of the suite.*kmeans"):
        parse_expected({"datasets": {"toy": {"label_budgets": ["1%"], "rows": {"kmean": [1.0]}}}}, "s.yaml",
                       selectors=["random", "kmeans"], budgets={"toy": ["1%"]})
    with pytest.raises(UserError, match=r"label budget 2% is not run by the suite"):
        parse_expected({"datasets": {"toy": {"label_budgets": ["2%"], "rows": {"random": [1.0]}}}}, "s.yaml",
                       selectors=["random"], budgets={"toy": ["1%"]})
    with pytest.raises(UserError, match=re.escape("one top-1 (or null) per label budget (2: 1%, 2%)")):
        parse_expected({"datasets": {"toy": {"label_budgets": ["1%", "2%"], "rows": {"random": [1.0]}}}}, "s.yaml")
    with pytest.raises(UserError, match="has key 'tolerence'.*tolerance"):
        parse_expected({"tolerence": 2, "datasets": {}}, "s.yaml")


def test_the_paper_suite_lists_the_whole_published_table():
    """benchmarks/paper-activeft.yaml: every published cell names a selector and budget the suite runs
    (checked when it loads), the table's 7 rows are there (ALFA-Mix as not implemented), and the new
    cold-start methods run beside them."""
    path = ROOT / "benchmarks" / "paper-activeft.yaml"
    suite = load_suite(path, whole_pool=lambda s: s == "full")
    section = yaml.safe_load(path.read_text())["expected"]
    exp = parse_expected(section, str(path))
    assert len(exp.cells) == 3 * 6 - 1 + 4 * 6 - 1 + 3 * 6 - 1  # null: batch-AL coreset at the smallest budget
    assert {c.published_as for c in exp.cells} >= {"FDS (k-center)", "coreset (batch AL)", "random", "kmeans",
                                                   "activeft", "bilaf"}
    assert [m["published_as"] for m in exp.not_implemented] == ["ALFA-Mix (batch AL)"]
    ran = {r.point.selector for r in suite.runs}
    assert {"typiclust", "probcover", "maxherding", "usl"} <= ran
    c100 = {(c.selector, c.label_budget): c for c in exp.cells if c.dataset == "cifar100"}
    assert c100[("activeft", "2%")].top1 == 40.7 and c100[("kmeans", "2%")].tolerance == 9.0
