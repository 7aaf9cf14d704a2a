"""Inputs are checked before the heavy imports: an argument or config error, `list` and `--help`
answer without importing torch or timm (seconds each on a small machine; issue 15, item 7).

Each case runs the command line in a fresh interpreter (the test process has torch loaded
already) through a wrapper that reports, when the command ends, which heavy modules it imported.
No timings are asserted here: `benchmarks/startup_time.py` measures them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HEAVY = ("torch", "timm", "torchvision", "open_clip", "transformers", "wandb")
_MARK = "HEAVY-IMPORTED "

# the CLI as `vecaf-bench ARGS`, then the heavy modules it imported, as one line on stderr
_WRAPPER = f"""
import json, sys
sys.argv = ["vecaf-bench", *sys.argv[1:]]
try:
    from vecaf_bench.cli import main
    main()
finally:
    print({_MARK!r} + json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)), file=sys.stderr)
"""


def _cli(cwd: Path, *args: str, code: str = _WRAPPER) -> tuple[int, str, Any]:
    """(exit code, stdout + stderr without the report line, the report: the heavy modules imported)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    lines = (p.stdout + p.stderr).splitlines()
    report = [line for line in lines if line.startswith(_MARK)]
    assert report, f"the wrapper did not report (exit {p.returncode}):\n{p.stdout}{p.stderr}"
    text = "\n".join(line for line in lines if not line.startswith(_MARK))
    return p.returncode, text, json.loads(report[-1][len(_MARK):])


def _refused(tmp_path: Path, *args: str) -> str:
    """The message of a refused command, checked: exit 2, one error paragraph, nothing heavy imported."""
    code, text, heavy = _cli(tmp_path, *args)
    assert code == 2, text
    assert "Traceback" not in text
    assert text.lstrip().startswith("error:"), text
    assert heavy == [], f"`vecaf-bench {' '.join(args)}` imported {heavy} before refusing the input"
    assert not any(tmp_path.iterdir()), "a refused command left files behind"
    return " ".join(text.split())


def test_unknown_config_key_is_refused_without_torch(tmp_path):
    msg = _refused(tmp_path, "run", "--set", "nosuch=1")
    assert "unknown config key 'nosuch' (--set)" in msg
    assert "Valid keys: selector," in msg


def test_unknown_selector_is_refused_with_its_closest_match_without_torch(tmp_path):
    msg = _refused(tmp_path, "run", "--selector", "rando", "--dataset", "digits")
    assert ("unknown selector 'rando'; known: activeft, badge, bald, bilaf, coreset, coreset-model, entropy, full, "
            "kmeans, least-confidence, margin, maxherding, probcover, random, typiclust, uherding, usl, vecaf.") in msg
    assert "Did you mean 'random'?" in msg


@pytest.mark.parametrize(
    "args, expected",
    [
        (("--dataset", "digitz"), "unknown dataset 'digitz'; known: "),
        (("--backbone", "timn:resnet18"), "unknown backbone 'timn'; known: timm. Did you mean 'timm'?"),
        (("--set", "trackers=[local,wandbb]"), "unknown tracker 'wandbb'; known: local, wandb. Did you mean 'wandb'?"),
        (("--shift", "corruptoin:gaussian_noise:3"), "unknown shift 'corruptoin'; known: corruption, domain."),
        (("--set", "cold_start=rand"), "unknown selector 'rand'"),
    ],
    ids=["dataset", "backbone-family", "tracker", "shift", "cold-start"],
)
def test_unknown_plugin_names_in_a_run_config_are_refused_without_torch(tmp_path, args, expected):
    msg = _refused(tmp_path, "run", *args)
    assert expected in msg
    if args[0] == "--dataset":
        assert "Did you mean 'digits'?" in msg and "Or give the path of a folder" in msg
    if "cold_start" in args[-1]:
        assert "Did you mean 'random'?" in msg and "It is cold_start's value" in msg


def test_a_config_file_error_is_refused_without_torch(tmp_path):
    cfg = tmp_path / "my.yaml"
    cfg.write_text("selector: random\nbatch_size: many\n")
    code, text, heavy = _cli(tmp_path, "run", "--config", str(cfg))
    assert code == 2 and "Traceback" not in text, text
    assert "batch_size" in text and "many" in text and str(cfg) in " ".join(text.split())
    assert heavy == []


def test_list_imports_neither_torch_nor_timm(tmp_path):
    code, text, heavy = _cli(tmp_path, "list")
    assert code == 0, text
    for name in ("activeft", "coreset", "random", "vecaf", "timm", "digits", "minilm", "corruption", "local"):
        assert name in text
    assert "labels, model, text" in text  # vecaf's declared uses, read without making it
    assert heavy == []


def test_list_details_imports_neither_torch_nor_timm(tmp_path):
    code, text, heavy = _cli(tmp_path, "list", "selectors", "--details", "vecaf")
    assert code == 0, text
    assert "VeCAF" in text and "reads: labels, model, text" in text
    assert heavy == []


def test_run_help_imports_neither_torch_nor_timm(tmp_path):
    code, text, heavy = _cli(tmp_path, "run", "--help")
    assert code == 0, text
    assert "--selector" in text and "--label-budget" in text
    assert heavy == []


def test_a_bad_suite_file_is_refused_without_torch(tmp_path):
    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nselectors: [random]\ndatasets: [digits]\ngrid: {seed: [0]}\n")
    code, text, heavy = _cli(tmp_path, "suite", str(suite), "--dry-run")
    assert code == 2 and "Traceback" not in text, text
    assert "unknown suite key 'grid'" in text
    assert heavy == []


_IMPORT_PLUGINS = f"""
import json, sys
from importlib import metadata
out = {{}}
for ep in metadata.entry_points(group="vecaf_bench"):
    if not ep.value.startswith("vecaf_bench_plugins."):
        continue
    before = {{m for m in {HEAVY!r} if m in sys.modules}}
    ep.load()
    out[ep.value] = sorted({{m for m in {HEAVY!r} if m in sys.modules}} - before)
print({_MARK!r} + json.dumps(out), file=sys.stderr)
"""


def test_every_builtin_plugin_module_imports_without_torch(tmp_path):
    """What the plugin manager loads for every command: a plugin that imports torch (or timm,
    open_clip, ...) at module level makes every argument error wait for it."""
    code, text, report = _cli(tmp_path, code=_IMPORT_PLUGINS)
    assert code == 0, text
    assert len(report) >= 10, report
    assert {m: h for m, h in report.items() if h} == {}


@pytest.mark.parametrize("args, expected", [
    (["--features", "{in}/nan.npy"], "has NaN or infinite values in 1 row(s) (3) of 50"),
    (["--features", "{in}/f.txt"], "is not a .npy file"),
    (["--features", "{in}/ok.npy", "--selector", "activft"], "unknown selector 'activft'"),
    (["--features", "{in}/ok.npy", "--selector", "activeft", "--set", "tau=abc"],
     "selector 'activeft' option 'tau' must be a finite number (float), got 'abc' (--set tau=...)"),
    (["--features", "{in}/ok.npy", "--budget", "abc"], "label budget 'abc' is not a number"),
])
def test_select_refuses_bad_input_without_torch(tmp_path, args, expected):
    """`select` checks its files, budget, selector name and options before a selector module (and
    with it torch) is imported: each answer comes in well under a second."""
    import numpy as np

    inputs, cwd = tmp_path / "in", tmp_path / "cwd"
    inputs.mkdir()
    cwd.mkdir()
    feats = np.random.default_rng(0).random((50, 8), dtype=np.float32)
    np.save(inputs / "ok.npy", feats)
    feats[3] = np.nan
    np.save(inputs / "nan.npy", feats)
    (inputs / "f.txt").write_text("1 2 3\n")
    argv = [a.replace("{in}", str(inputs)) for a in args]
    if "--budget" not in argv:
        argv += ["--budget", "5"]
    msg = _refused(cwd, "select", *argv, "--out", "x.json")
    assert expected in msg
