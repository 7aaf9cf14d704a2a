"""Every shell command the README shows runs as written, on tiny budgets, or is excused below.

Why: README examples drifted from the code (`--config my.yaml --set selector_options.chunk=4096`
failed with the default selector, which has no `chunk`). Here every line of every shell block
(```bash, ```sh, ```shell, ```console's `$ ` lines, and bare ``` blocks; output is shown in
```text blocks) is either run, in-process through the real CLI, or listed in EXCUSED with the
reason it cannot run on a CI machine. A new README command that is neither fails
`test_every_readme_command_is_run_or_excused`.

What the test changes, and nothing else:
- `run`: tiny-budget flags appended (TINY_RUN; `--dataset digits` unless the command names an
  embedded dataset or a folder made here) and `--out` set to a folder of the command's own;
- `select` on an image folder: `--image-size 32` appended (TINY_SELECT; the features are the cost);
- `suite`: the suite file the command names is the repository's, with its grid shrunk
  (TINY_SUITE) before it is written into the working folder; a suite that evaluates a fixed
  selection keeps its datasets and label budgets (the selection is made for them);
- the environment: HF_HUB_OFFLINE=1, WANDB_MODE=offline, a temporary working folder, data root
  and home (for `~`), and the tests' shared feature cache.
Files a command names are made from the README's own blocks where it shows them (a block whose
first line is `# <path>`, such as `# my.yaml`); the few it names without showing (a user's own
features, captions, downloaded archives, image folders) are made by MADE_HERE, each with its
reason, and files that depend on an earlier command's output (a list of images to exclude, which
must not hold an earlier pick) by MADE_BEFORE, just before the command that names them.
A README line that is not a `vecaf-bench` command but sets up what the next ones use (the
labelling demo's folders, then `cd demo`) is in SETUP: the test does the same in Python, and the
commands after it in its section run in that folder, as the user's do.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import re
import shlex
import sys
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner, Result

from vecaf_bench.cli import app
from vecaf_bench.picks import read_picks

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
SHELL_LANGS = {"", "bash", "sh", "shell", "console"}

# appended to every `vecaf-bench select --dataset FOLDER`: the input size of the extracted features
TINY_SELECT = ["--image-size", "32"]
# appended to every `vecaf-bench run`: the training cost (always replaced) ...
TINY_RUN = ["--image-size", "32", "--batch-budget", "6", "--batch-size", "8", "--eval-every", "3"]
# ... and these only where the command does not give its own
TINY_RUN_DEFAULTS = {"--dataset": "digits", "--label-budget": "30"}
EMBEDDED_DATASETS = {"digits", "mnist"}  # offline, shipped in packages
# the grid and base of a suite file, shrunk; the selectors (and everything else) as the file has them
TINY_SUITE: dict[str, Any] = {
    "datasets": ["digits"],
    "label_budgets": [30],
    "batch_budgets": [6],
    "seeds": [0],
    "base": {"batch_size": 8, "eval_every": 3, "image_size": 32, "train": {"warmup_steps": 1}},
}

# README commands that cannot run on a CI machine (2 CPUs, no GPU, no network), with the reason
EXCUSED: dict[str, str] = {
    "python -m venv .venv && . .venv/bin/activate && pip install -e .":
        "pip install: needs the network; the test itself runs in that install",
    "pip install --no-deps animal-mnist":
        "pip install: needs the network; SETUP writes the demo's folders from scikit-learn's digits instead",
    'pip install -e ".[test]" && pytest -n auto':
        "pip install needs the network, and pytest is the whole test suite this file is part of",
    "vecaf-bench run --dataset /data/my-images --backbone timm:resnet50 --image-size 224 --device cuda":
        "--device cuda needs a GPU; /data/my-images is the user's own folder; resnet50's weights come from the hub",
    "vecaf-bench run --selector vecaf --dataset imagenet-r --data-root /data":
        "ImageNet-R (30k images, 2 GB) prepared under /data",
    "vecaf-bench run --dataset imagenet --shift domain:imagenet-r --shift domain:imagenet-sketch":
        "ImageNet-1k, ImageNet-R and ImageNet-Sketch on disk",
    "vecaf-bench data prepare imagenet-r":
        "downloads the 2 GB official archive (network)",
    "vecaf-bench data prepare imagenet --from /datasets/imagenet --link":
        "a prepared ImageNet folder at /datasets/imagenet (outside any temporary folder)",
    "vecaf-bench data prepare cifar10 --from cifar-10-python.tar.gz --sha256 <hex>":
        "<hex> is a placeholder for the archive's SHA-256, and the archive is the 163 MB CIFAR-10 download",
    "torchrun --nproc_per_node 8 -m vecaf_bench.cli run --dataset imagenet --backbone timm:vit_small_patch16_224.dino "
    "--image-size 224 --batch-size 512 --label-budget 1% --batch-budget 10000":
        "8 GPUs, ImageNet and DINO weights from the hub (tests/test_ddp.py runs torchrun with 2 CPU processes)",
}

# README lines that set up the next commands (not `vecaf-bench` lines): done here in Python (the
# workspace fixture), and the commands after it in the same README section run in `cwd`
@dataclass(frozen=True)
class Setup:
    why: str
    cwd: str


DEMO = "python examples/animal_folders.py demo && cd demo"
SETUP: dict[str, Setup] = {
    DEMO: Setup("the example's own `write` lays out the demo folders, from scikit-learn's digits instead of the "
                "silhouettes (animal-mnist is installed with --no-deps, outside the test extras)", "demo"),
}

# runs that read another command's results: run that one first
_ROUND1 = "vecaf-bench select --dataset unlabelled --budget 100 --selector activeft --out picks.csv --preview picks.png"
NEEDS = {
    "vecaf-bench leaderboard --plot smoke.png": "vecaf-bench suite benchmarks/smoke.yaml",
    "vecaf-bench run --selection picks.csv --dataset LABELLED_DIR --label-budget 500":
        "vecaf-bench select --dataset DIR --budget 500 --selector activeft --out picks.csv",
    "vecaf-bench select --dataset unlabelled --budget 200 --selector activeft --selected picks.csv --exclude "
    "blurry.csv --out round2.csv": _ROUND1,
    "vecaf-bench run --selection picks.csv --dataset labelled --label-budget 100 --image-size 64": _ROUND1,
    "vecaf-bench suite ../examples/labelling.yaml": _ROUND1,
    "vecaf-bench leaderboard runs/labelling --format html -o board.html":
        "vecaf-bench suite ../examples/labelling.yaml",
}


# -- reading the README ------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    lang: str
    lines: tuple[str, ...]
    line: int  # 1-based line of the opening fence


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, with their language."""
    out: list[Block] = []
    lang: str | None = None
    start, body = 0, list[str]()
    for n, line in enumerate(text.splitlines(), 1):
        fence = line.strip().startswith("```")
        if lang is None and fence:
            lang, start, body = line.strip()[3:].strip().split(" ")[0].lower(), n, []
        elif lang is not None and fence:
            out.append(Block(lang, tuple(body), start))
            lang = None
        elif lang is not None:
            body.append(line)
    assert lang is None, f"README: the code block opened at line {start} is never closed"
    return out


def _strip_comment(line: str) -> str:
    return re.sub(r"(^|\s)#.*$", "", line).strip()


def shell_commands(text: str) -> list[str]:
    """Every command in the shell blocks: continuation lines joined, comments dropped, whitespace
    collapsed; in ```console blocks only the `$ ` lines (the rest is output)."""
    out: list[str] = []
    for block in fenced_blocks(text):
        if block.lang not in SHELL_LANGS:
            continue
        pending = ""
        for raw in block.lines:
            line = raw.strip()
            if block.lang == "console" and not pending:
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            elif line.startswith("$ ") and not pending:
                line = line[2:]
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            command = " ".join(_strip_comment(pending + line).split())
            pending = ""
            if command:
                out.append(command)
        assert not pending, f"README block at line {block.line} ends in a continuation line"
    return out


def shown_files(text: str) -> dict[str, str]:
    """Files whose content the README shows: a non-shell block whose first line is `# <path>`."""
    out: dict[str, str] = {}
    for block in fenced_blocks(text):
        if block.lang in SHELL_LANGS or not block.lines:
            continue
        m = re.fullmatch(r"#\s*([\w./-]+\.\w+)\s*(:.*)?", block.lines[0].strip())
        if m:
            out[m.group(1)] = "\n".join(block.lines) + "\n"
    return out


def commands_after_setups(text: str) -> dict[str, str]:
    """command -> the folder (relative to the working folder) it runs in, for the commands that
    follow a SETUP line in its `## ` section."""
    out: dict[str, str] = {}
    for part in re.split(r"(?m)^(?=## )", text):
        commands = shell_commands(part)
        for line, setup in SETUP.items():
            if line in commands:
                out.update({c: setup.cwd for c in commands[commands.index(line) + 1:]})
    return out


README_TEXT = README.read_text(encoding="utf-8")
COMMANDS = shell_commands(README_TEXT)
IN_FOLDER = commands_after_setups(README_TEXT)


@dataclass(frozen=True)
class Parsed:
    env: dict[str, str]
    argv: list[str]  # after `vecaf-bench`


def parse(command: str) -> Parsed | None:
    """`[NAME=value ...] vecaf-bench ARGS` as the shell splits it, else None (not runnable here)."""
    words = shlex.split(command)
    env: dict[str, str] = {}
    while words and re.fullmatch(r"[A-Za-z_]\w*=.*", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if not words or words[0] != "vecaf-bench" or {"&&", "||", "|", ";", ">", "<"} & set(words):
        return None
    return Parsed(env, words[1:])


RUNNABLE = [c for c in COMMANDS if c not in EXCUSED and parse(c) is not None]


def subcommand(argv: list[str]) -> str:
    words = [w for w in argv if not w.startswith("-")]
    return " ".join(words[:2]) if words[:1] == ["data"] else (words[0] if words else "")


def option(argv: list[str], name: str) -> str | None:
    """The value of the last `name VALUE` or `name=VALUE` in argv (as click reads it)."""
    value = None
    for i, w in enumerate(argv):
        if w == name and i + 1 < len(argv):
            value = argv[i + 1]
        elif w.startswith(name + "="):
            value = w.split("=", 1)[1]
    return value


def tiny_run(argv: list[str], out: Path, cwd: Path | None = None) -> list[str]:
    """argv with the tiny budgets; a dataset that is neither embedded nor a folder in `cwd` (made
    here) becomes digits."""
    extra = list(TINY_RUN)
    for flag, value in TINY_RUN_DEFAULTS.items():
        given = option(argv, flag)
        here = given is not None and cwd is not None and (cwd / given).is_dir()
        if given is None or (flag == "--dataset" and given not in EMBEDDED_DATASETS and not here):
            extra += [flag, value]
    return [*argv, *extra, "--out", str(out)]


# -- files the README names without showing them -----------------------------------------------
def _example(name: str) -> Any:
    """A module of examples/, imported as the scripts there import each other (by their folder)."""
    sys.path.insert(0, str(REPO / "examples"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(REPO / "examples"))


def write_demo(out: Path, per_class: int, pool: int) -> None:
    """examples/animal_folders.py's two folders (unlabelled/ and labelled/train|val/), written by
    its own `write`, from `per_class` real digit images per class, `pool` of them in the pool."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    keep = np.concatenate([np.flatnonzero(digits.target == k)[:per_class] for k in range(10)])
    images = np.rint(digits.images[keep] * (255 / 16)).astype(np.uint8)
    _example("animal_folders").write(out, pool=pool, images=images, labels=digits.target[keep])


def make_folder_pair(path: Path) -> None:
    """DIR (600 unlabelled images, in parts) and LABELLED_DIR (the same with their classes, and
    100 test images) beside it: one call makes both."""
    if path.exists():
        return
    tmp = path.parent / "_folders"
    write_demo(tmp, per_class=70, pool=60)
    (tmp / "unlabelled").rename(path.parent / "DIR")
    (tmp / "labelled").rename(path.parent / "LABELLED_DIR")
    tmp.rmdir()


def _png(rng: np.random.Generator) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _renditions(prefix: str) -> dict[str, bytes]:
    """Two ImageNet-R classes with three images each (their WordNet ids, as the real archive has)."""
    from vecaf_bench_plugins.datasets.imagenet import imagenet_subset

    rng = np.random.default_rng(0)
    return {f"{prefix}/{w}/art_{i}.png": _png(rng) for w in imagenet_subset("imagenet-r")[0][:2] for i in range(3)}


def make_features(path: Path) -> None:
    np.save(path, np.random.default_rng(0).standard_normal((300, 16)).astype(np.float32))


def make_captions(path: Path) -> None:
    """One caption per pool image of the dataset the runs use (digits)."""
    from vecaf_bench.data import DatasetRequest
    from vecaf_bench.pluginmanager import PluginHost

    splits = PluginHost().datasets().get(TINY_RUN_DEFAULTS["--dataset"]).factory(
        DatasetRequest(TINY_RUN_DEFAULTS["--dataset"]))
    names = splits.class_names or splits.classes
    rows = [f"{i},a handwritten {names[int(y)]}" for i, y in enumerate(splits.pool.labels)]
    path.write_text("index,caption\n" + "\n".join(rows) + "\n")


def make_imagenet_r_tar(path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in _renditions("imagenet-r").items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def make_sketch_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in _renditions("sketch").items():
            zf.writestr(name, data)


# path in the working folder (~ is the test's home) -> (why the test makes it, how)
MADE_HERE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "F.npy": ("the user's own (N, d) pool features: 300 x 16 random rows", make_features),
    "caps.csv": ("the user's captions, one per pool image: made for the digits pool the runs use", make_captions),
    "~/Downloads/imagenet-r.tar": ("the 2 GB download: a tar of two ImageNet-R classes, three images each",
                                   make_imagenet_r_tar),
    "~/Downloads/ImageNet-Sketch.zip": ("the 8 GB download: a zip in its layout, two classes", make_sketch_zip),
    "DIR": ("the user's folder of unlabelled images: 600 digits as PNG files", make_folder_pair),
    "LABELLED_DIR": ("the same images labelled (class folders) with a test split", make_folder_pair),
}


def make_exclusions(path: Path) -> None:
    """Three images of the folder that the first round did not pick, as a picks file with a path
    column (what a person lists by hand)."""
    picked = set(read_picks(path.parent / "picks.csv").paths)
    images = sorted(p.relative_to(path.parent / "unlabelled").as_posix()
                    for p in (path.parent / "unlabelled").rglob("*.png"))
    path.write_text("path\n" + "\n".join([i for i in images if i not in picked][:3]) + "\n")


# name (in the command's folder) -> (why, how); made just before the first command that names it
MADE_BEFORE: dict[str, tuple[str, Callable[[Path], None]]] = {
    "blurry.csv": ("the user's own list of images nobody should label: three the first round did not pick",
                   make_exclusions),
}


# -- running -----------------------------------------------------------------------------------
@dataclass
class Workspace:
    root: Path
    cwd: Path
    home: Path
    data: Path
    results: dict[str, Result]

    def path(self, name: str, command: str = "") -> Path:
        """Where `name` is for `command` (in the folder a SETUP line moved it to)."""
        return self.home / name[2:] if name.startswith("~/") else self.cwd_of(command) / name

    def cwd_of(self, command: str) -> Path:
        return self.cwd / IN_FOLDER[command] if command in IN_FOLDER else self.cwd


def in_repo(command: str, name: str) -> Path:
    """The repository's file `name`, as `command` names it from the folder the README runs it in
    (demo/ need not exist in the repository: the path is normalised, not resolved)."""
    return Path(os.path.normpath(REPO / IN_FOLDER.get(command, ".") / name))


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    root = tmp_path_factory.mktemp("readme")
    ws = Workspace(root, root / "work", root / "home", root / "data", {})
    for d in (ws.cwd, ws.home, ws.data):
        d.mkdir()
    for name, content in shown_files(README_TEXT).items():
        ws.path(name).parent.mkdir(parents=True, exist_ok=True)
        ws.path(name).write_text(content)
    for name, (_, make) in MADE_HERE.items():
        ws.path(name).parent.mkdir(parents=True, exist_ok=True)
        make(ws.path(name))
    write_demo(ws.cwd / SETUP[DEMO].cwd, per_class=60, pool=40)  # DEMO, as the example script does it
    return ws


def out_dir(command: str, ws: Workspace) -> Path:
    """The `--out` of a README `run` command: a folder of its own, so its summary is unambiguous."""
    return ws.root / "out" / re.sub(r"\W+", "-", command)[:80]


def _expand_home(argv: list[str], ws: Workspace) -> list[str]:
    """The shell's `~/` expansion, with the test's home."""
    return [str(ws.home / w[2:]) if w.startswith("~/") else w for w in argv]


def _fixed_selection(selector: Any) -> bool:
    return isinstance(selector, dict) and selector.get("name") == "selection"


def _suite_file(command: str, argv: list[str], ws: Workspace) -> None:
    name = next(w for w in argv[1:] if not w.startswith("-"))
    data = yaml.safe_load(in_repo(command, name).read_text())
    base = {**data.get("base", {}), **TINY_SUITE["base"]}
    base["train"] = {**data.get("base", {}).get("train", {}), **TINY_SUITE["base"]["train"]}
    tiny = dict(TINY_SUITE)
    if any(_fixed_selection(s) for s in data["selectors"]):  # the picks belong to its dataset and budget
        tiny = {k: v for k, v in tiny.items() if k not in ("datasets", "label_budgets")}
    data.update({**tiny, "base": base})
    ws.path(name, command).parent.mkdir(parents=True, exist_ok=True)
    ws.path(name, command).write_text(yaml.safe_dump(data, sort_keys=False))


def execute(command: str, ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> Result:
    """Runs one README command once (in-process, through the real CLI) and keeps its result."""
    if command in ws.results:
        return ws.results[command]
    if command in NEEDS:
        first = execute(NEEDS[command], ws, monkeypatch)
        assert first.exit_code == 0, f"{command} reads the results of {NEEDS[command]}, which failed:\n{first.output}"
    parsed = parse(command)
    assert parsed is not None, command
    argv = _expand_home(parsed.argv, ws)
    sub = subcommand(argv)
    if sub == "run":
        argv = tiny_run(argv, out_dir(command, ws), ws.cwd_of(command))
    elif sub == "suite":
        _suite_file(command, argv, ws)
    elif sub == "select" and option(argv, "--dataset") is not None:
        argv = [*argv, *TINY_SELECT]
    for name, (_, make) in MADE_BEFORE.items():
        if name in argv and not ws.path(name, command).exists():
            make(ws.path(name, command))
    with monkeypatch.context() as mp:
        mp.chdir(ws.cwd_of(command))
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("VECAF_BENCH_DATA", str(ws.data))
        mp.setenv("COLUMNS", "250")
        before = set(sys.modules)
        for key, value in parsed.env.items():
            mp.setenv(key, value)
            if key == "PYTHONPATH":
                for entry in reversed(value.split(os.pathsep)):
                    mp.syspath_prepend(str((ws.cwd / entry).resolve()))
        try:
            result = CliRunner().invoke(app, argv, catch_exceptions=False)
        finally:
            for name in set(sys.modules) - before:  # a --plugin module imported from the working folder
                if str(getattr(sys.modules[name], "__file__", "") or "").startswith(str(ws.root)):
                    del sys.modules[name]
    ws.results[command] = result
    return result


def _run_dir(out: Path) -> Path:
    dirs = [p for p in out.iterdir() if p.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def check_outputs(command: str, result: Result, ws: Workspace) -> None:
    """What each kind of command must leave behind, beyond exit code 0."""
    parsed = parse(command)
    assert parsed is not None
    argv = _expand_home(parsed.argv, ws)
    sub = subcommand(argv)
    if sub == "run":
        summary = json.loads((_run_dir(out_dir(command, ws)) / "summary.json").read_text())
        assert summary["status"] == "finished", summary
        assert summary["steps"] == int(TINY_RUN[TINY_RUN.index("--batch-budget") + 1])
    elif sub == "select":
        picks = read_picks(ws.path(option(argv, "--out") or "", command))
        picked = picks.paths if picks.indices is None else picks.indices
        assert len(picked) == len(set(picked)), picked
        budget = option(argv, "--budget") or ""
        assert picked and (not budget.isdigit() or len(picked) == int(budget)), (budget, len(picked))
        earlier = option(argv, "--selected")
        if earlier is not None:
            first = read_picks(ws.path(earlier, command)).paths
            assert not set(picks.paths) & set(first), "round 2 picks new images only"
        preview = option(argv, "--preview")
        assert preview is None or Image.open(ws.path(preview, command)).size[0] > 100
    elif sub == "suite":
        suite = yaml.safe_load((ws.path(argv[1], command)).read_text())
        ledger = json.loads((ws.cwd_of(command) / "runs" / suite["name"] / "suite.json").read_text())
        assert {r["status"] for r in ledger["runs"]} == {"finished"}, ledger["counts"]
        assert {r["selector"] for r in ledger["runs"]} == {s if isinstance(s, str) else s["name"]
                                                           for s in suite["selectors"]}
    elif sub == "leaderboard":
        plot = option(argv, "--plot")
        assert plot is None or ws.path(plot, command).stat().st_size > 0
        runs = ws.cwd_of(command) / "runs"
        ran = {r["selector"] for p in runs.glob("*/suite.json") for r in json.loads(p.read_text())["runs"]}
        written = option(argv, "-o") or option(argv, "--output")
        board = ws.path(written, command).read_text() if written else result.output
        assert ran and all(name in board for name in ran), board
    elif sub == "data prepare":
        name = next(w for w in argv[2:] if not w.startswith("-"))
        assert (ws.data / name).is_dir() and any((ws.data / name).iterdir())


# -- the tests ---------------------------------------------------------------------------------
def test_the_readme_extraction_reads_blocks_as_a_user_would() -> None:
    md = "\n".join([
        "```bash", "vecaf-bench run \\", "    --seed 1   # a comment", "", "```",
        "```console", "$ vecaf-bench list", "output line", "```",
        "```text", "vecaf-bench run 2026-output", "```",
        "```yaml", "# my.yaml", "seed: 1", "```",
    ])
    assert shell_commands(md) == ["vecaf-bench run --seed 1", "vecaf-bench list"]
    assert shown_files(md) == {"my.yaml": "# my.yaml\nseed: 1\n"}
    assert parse("PYTHONPATH=. vecaf-bench list") == Parsed({"PYTHONPATH": "."}, ["list"])
    assert parse("vecaf-bench suite a.yaml && vecaf-bench leaderboard") is None
    assert tiny_run(["run", "--dataset", "mnist", "--label-budget", "5%"], Path("o"))[-2:] == ["--out", "o"]
    assert "--dataset" not in tiny_run(["run", "--dataset", "mnist"], Path("o"))[2:]


def test_every_readme_command_is_run_or_excused() -> None:
    """A README command must run here or be excused with a reason; an excuse must still name a
    README command (so the table cannot keep excuses for commands that are gone)."""
    assert len(COMMANDS) > 10, COMMANDS
    neither = [c for c in COMMANDS if c not in EXCUSED and c not in SETUP and parse(c) is None]
    assert not neither, (
        f"README commands this test can neither run nor finds excused: {neither}. Write them as "
        "`vecaf-bench ...` lines (one command a line), or add them to EXCUSED with the reason.")
    stale = [c for c in EXCUSED if c not in COMMANDS]
    assert not stale, f"EXCUSED names commands the README no longer has: {stale}"
    stale_needs = [c for pair in NEEDS.items() for c in pair if c not in RUNNABLE]
    assert not stale_needs, f"NEEDS names commands that are not run: {stale_needs}"


def test_every_file_a_readme_command_names_is_shown_or_made_here() -> None:
    """A command's file argument comes from a README block (`# <path>` on its first line), from
    the repository (a suite file), or from MADE_HERE; otherwise a user could not run it either."""
    known = set(shown_files(README_TEXT)) | set(MADE_HERE) | set(MADE_BEFORE)
    for command in RUNNABLE:  # what a command writes, a later one reads (their order: NEEDS)
        argv = parse(command).argv  # type: ignore[union-attr]
        known |= {v for v in (option(argv, "--out"), option(argv, "-o")) if v is not None}
    missing = []
    for command in RUNNABLE:
        parsed = parse(command)
        assert parsed is not None
        for before, word in zip(["", *parsed.argv[:-1]], parsed.argv, strict=True):
            value = word.split("=", 1)[-1]  # `--set captions=caps.csv` names caps.csv
            written = before in ("--out", "--plot")  # what the command writes
            if re.search(r"\.(ya?ml|npy|csv|jsonl|tar|zip|gz|py)$", value) and not written:
                if value not in known and not in_repo(command, value).is_file():
                    missing.append((command, value))
    assert not missing, missing


@pytest.mark.slow  # 15 commands, 13 of them train: about 75 s on 2 CPUs
@pytest.mark.parametrize("command", RUNNABLE, ids=RUNNABLE)
def test_readme_command_runs(command: str, workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    result = execute(command, workspace, monkeypatch)
    assert result.exit_code == 0, f"{command}\nexit {result.exit_code}\n{result.output}"
    assert "Traceback" not in result.output
    check_outputs(command, result, workspace)
