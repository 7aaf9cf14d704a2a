"""`leaderboard --format html`: one self-contained page, rendered for real in headless Chromium.

The page's board table must hold exactly the markdown board's cells (the same numbers), fetch
nothing from the network, embed its plots, and render to a screenshot that shows the table and
the plot (not a blank or broken page)."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from test_leaderboard import app, runs  # noqa: F401 - fixtures: the leaderboard app and the toy runs
from typer.testing import CliRunner


class _Tables(HTMLParser):
    """Every <table>'s rows of cell texts, and the class of each table."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[tuple[str, list[list[str]]]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((dict(attrs).get("class", ""), []))
        elif tag == "tr" and self.tables:
            self.tables[-1][1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _markdown_rows(text: str) -> list[list[str]]:
    """The first markdown table's rows (header included), with the markdown marks taken off."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("|"):
            if lines:
                break
            continue
        if set(line) <= set("|-"):
            continue
        cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
        lines.append([c.strip().replace("**", "").replace("\\|", "|") for c in cells])
    return lines


def test_html_board_is_self_contained_and_holds_the_markdown_numbers(app, runs, tmp_path):  # noqa: F811
    cli = CliRunner()
    md = cli.invoke(app, ["leaderboard", str(runs), "--format", "markdown"])
    assert md.exit_code == 0, md.output
    r = cli.invoke(app, ["leaderboard", str(runs), "--format", "html", "-o", str(tmp_path / "board.html")])
    assert r.exit_code == 0, r.output
    page = (tmp_path / "board.html").read_text()
    parser = _Tables()
    parser.feed(page)
    board = next(rows for cls, rows in parser.tables if cls == "board")
    assert board == _markdown_rows(md.output)
    assert "86.00 ± 4.97" in page and "<b>86.00 ± 4.97</b>" in page
    assert not re.search(r"""(src|href)\s*=\s*['"]?(https?:)?//""", page), "nothing is fetched from the network"
    assert page.count("data:image/png;base64,") >= 2, "the curves and the budget sweep are embedded"
    assert "activeft — reads features" in page and "ActiveFT" in page, "method cards"
    assert "aft-s0" in page and "selector_options" in page, "the configs behind each row"


def test_the_output_files_extension_picks_the_format(app, runs, tmp_path):  # noqa: F811
    """`-o board.html` without --format is the HTML page, not markdown in a file named .html."""
    cli = CliRunner()
    for name, start in (("b.html", "<!doctype html>"), ("b.md", "| dataset |"), ("b.json", "{")):
        r = cli.invoke(app, ["leaderboard", str(runs), "-o", str(tmp_path / name)])
        assert r.exit_code == 0, r.output
        assert (tmp_path / name).read_text().lstrip().lower().startswith(start.lower()), name
    for flag, name in (("-o", "b.html"), ("--plot", "p.png")):  # refused before the runs are read
        r = cli.invoke(app, ["leaderboard", str(runs), flag, str(tmp_path / "nowhere" / name)])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert f"the folder '{tmp_path / 'nowhere'}' does not exist" in " ".join(r.output.split())


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_html_board_renders_in_headless_chromium(app, runs, tmp_path):  # noqa: F811
    r = CliRunner().invoke(app, ["leaderboard", str(runs), "--format", "html", "-o", str(tmp_path / "board.html")])
    assert r.exit_code == 0, r.output
    shot = tmp_path / "shot.png"
    subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1400,2400",
         "--hide-scrollbars", (tmp_path / "board.html").as_uri()],
        check=True, capture_output=True, timeout=120,
    )
    im = np.asarray(Image.open(shot).convert("RGB"), dtype=float)
    assert im.shape[:2] == (2400, 1400)
    gray = im.mean(axis=2)
    assert (gray < 128).mean() > 0.005, "text was drawn"
    assert gray[:300].std() > 20, "the title and the table are at the top"
    saturated = (im.max(axis=2) - im.min(axis=2)) > 80
    assert saturated.mean() > 0.002, "the embedded plot's coloured curves are on the page"
