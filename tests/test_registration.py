"""Plugin registration cannot fail silently: every broken plugin is a `PluginError` (exit code 2,
one paragraph, no traceback) that names its package and module and says what to change.

Plugins here are modules written into tmp_path (loaded with `--plugin`) or fake installed
distributions: a ``*.dist-info`` folder with METADATA and entry_points.txt on sys.path, which
`importlib.metadata` finds like any installed package.
"""

from __future__ import annotations

import re
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from vecaf_bench.api import VecafBenchDeprecationWarning
from vecaf_bench.errors import PluginError
from vecaf_bench.pluginmanager import PluginHost

BUILTIN_SELECTORS = {"activeft", "badge", "bald", "bilaf", "coreset", "coreset-model", "entropy", "full", "kmeans",
                     "least-confidence", "margin", "maxherding", "probcover", "random", "typiclust", "uherding",
                     "usl", "vecaf"}


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """write(module_name, source): a plugin module on sys.path (forgotten from sys.modules after the test)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


@pytest.fixture
def dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins):
    """dist(package, {entry point: module}, {module: source}): a fake installed distribution."""

    def make(package: str, entry_points: dict[str, str], modules: dict[str, str], version: str = "1.2.3") -> None:
        for name, source in modules.items():
            plugins(name, source)
        info = tmp_path / f"{package.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        eps = "".join(f"{ep} = {module}\n" for ep, module in entry_points.items())
        (info / "entry_points.txt").write_text(f"[vecaf_bench]\n{eps}")

    return make


def _flat(text: str) -> str:
    return " ".join(text.split())


def load_error(*modules: str) -> str:
    with pytest.raises(PluginError) as e:
        PluginHost(list(modules))
    return _flat(str(e.value))


def assert_cli_error(cli, args: list[str], *parts: str) -> str:
    r = cli(*args)
    text = _flat(r.output)
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output, r.output
    assert text.startswith("error:"), r.output
    for part in parts:
        assert part in text, f"{part!r} not in {text!r}"
    return text


HEADER = "from vecaf_bench.api import Capabilities, hookimpl\n"
GOOD_SELECTOR = """
class Good:
    capabilities = Capabilities(uses={"labels"})

    def select(self, ctx, count):
        return list(range(count))
"""


# -- 1. a module that implements no hook -------------------------------------------------------------
def test_module_whose_hook_lacks_hookimpl_is_named(plugins, cli):
    mod = plugins(
        "undecorated_sel", HEADER + GOOD_SELECTOR + '\ndef vecaf_bench_add_selectors():\n    return {"good": Good}\n'
    )
    msg = load_error(mod)
    assert "plugin module 'undecorated_sel' (loaded with --plugin undecorated_sel)" in msg
    assert "implements no vecaf_bench hook" in msg
    assert "vecaf_bench_add_selectors is not decorated with vecaf_bench's @hookimpl" in msg
    assert "@hookimpl from vecaf_bench.api" in msg
    assert_cli_error(cli, ["list", "--plugin", mod], "module 'undecorated_sel'", "@hookimpl from vecaf_bench.api")


def test_hookimpl_of_another_project_is_named(plugins, cli):
    mod = plugins(
        "foreign_marker",
        """
        import pluggy

        hookimpl = pluggy.HookimplMarker("pytest")


        @hookimpl
        def vecaf_bench_add_selectors():
            return {}
        """,
    )
    msg = assert_cli_error(cli, ["list", "selectors", "--plugin", mod], "plugin module 'foreign_marker'")
    assert "carries the hookimpl marker of another project: pytest" in msg
    assert "from vecaf_bench.api import hookimpl" in msg


def test_entry_point_module_without_hooks_names_package_and_module(dist, cli):
    dist("empty-plugin", {"empty": "empty_plugin_mod"}, {"empty_plugin_mod": '"""Nothing here."""\nX = 1\n'})
    msg = load_error()
    assert "plugin module 'empty_plugin_mod' of package 'empty-plugin' (entry point 'empty')" in msg
    assert "implements no vecaf_bench hook, so it registers nothing" in msg
    assert "vecaf_bench_add_selectors" in msg and "@hookimpl from vecaf_bench.api" in msg
    assert "pip uninstall empty-plugin" in msg
    assert_cli_error(cli, ["list"], "package 'empty-plugin'", "module 'empty_plugin_mod'")


def test_one_undecorated_hook_beside_decorated_ones_is_named(plugins):
    mod = plugins(
        "half_decorated",
        HEADER
        + GOOD_SELECTOR
        + """
@hookimpl
def vecaf_bench_add_selectors():
    return {"half_good": Good}


def vecaf_bench_run_end(run, summary):
    print("never called")
""",
    )
    msg = load_error(mod)
    assert "plugin module 'half_decorated'" in msg and "has a hook that pluggy skips" in msg
    assert "vecaf_bench_run_end is not decorated" in msg


# -- 2. unknown (misspelled) hooks ----------------------------------------------------------------
TYPO_HOOK = (
    HEADER
    + GOOD_SELECTOR
    + """
@hookimpl
def vecaf_bench_add_selector():
    return {"typo_good": Good}
"""
)


def test_misspelled_hook_is_named_with_the_closest_hook(plugins, cli):
    mod = plugins("typo_hook", TYPO_HOOK)
    msg = load_error(mod)
    assert "plugin module 'typo_hook' (loaded with --plugin typo_hook)" in msg
    assert "implements unknown hook 'vecaf_bench_add_selector'" in msg
    assert "Did you mean 'vecaf_bench_add_selectors'?" in msg
    assert "vecaf_bench.hookspecs" in msg
    assert_cli_error(
        cli, ["list", "--plugin", mod], "unknown hook 'vecaf_bench_add_selector'", "vecaf_bench_add_selectors"
    )


def test_misspelled_hook_in_an_installed_package(dist, cli):
    dist("typo-plugin", {"typo": "typo_ep_mod"}, {"typo_ep_mod": TYPO_HOOK})
    assert_cli_error(
        cli,
        ["list", "selectors"],
        "plugin module 'typo_ep_mod' of package 'typo-plugin' (entry point 'typo')",
        "unknown hook 'vecaf_bench_add_selector'",
        "Did you mean 'vecaf_bench_add_selectors'?",
    )


def test_hook_with_arguments_not_in_its_spec(plugins):
    mod = plugins(
        "bad_args",
        HEADER + "\n@hookimpl\ndef vecaf_bench_run_end(run, summery):\n    pass\n",
    )
    msg = load_error(mod)
    assert "plugin module 'bad_args'" in msg and "does not match its spec" in msg and "summery" in msg


TRACKERS = """
from vecaf_bench.api import hookimpl


class TypoTracker:
    def __init__(self, config, run_dir):
        pass

    @hookimpl
    def vecaf_bench_run_ned(self, run, summary):
        pass


class UndecoratedTracker:
    def __init__(self, config, run_dir):
        pass

    def vecaf_bench_run_end(self, run, summary):
        pass


class GoodTracker:
    def __init__(self, config, run_dir):
        self.ended = []

    @hookimpl
    def vecaf_bench_run_end(self, run, summary):
        self.ended.append(summary["status"])


@hookimpl
def vecaf_bench_add_trackers():
    return {"typo_tracker": TypoTracker, "undecorated_tracker": UndecoratedTracker, "good_tracker": GoodTracker}
"""


def test_tracker_registered_at_run_time_is_checked(plugins, tmp_path):
    mod = plugins("my_trackers", TRACKERS)
    host = PluginHost([mod])
    typo = host.trackers().get("typo_tracker").factory(None, tmp_path)
    with pytest.raises(PluginError) as e:
        host.register_observer(typo, "typo_tracker")
    msg = _flat(str(e.value))
    assert (
        "tracker 'typo_tracker' (class TypoTracker) from module 'my_trackers' (loaded with --plugin my_trackers)" in msg
    )
    assert "unknown hook 'vecaf_bench_run_ned'" in msg and "Did you mean 'vecaf_bench_run_end'?" in msg
    assert not host.pm.is_registered(typo)
    host.pm.check_pending()  # nothing of it is left behind

    undecorated = host.trackers().get("undecorated_tracker").factory(None, tmp_path)
    with pytest.raises(PluginError) as e:
        host.register_observer(undecorated, "undecorated_tracker")
    msg = _flat(str(e.value))
    assert "tracker 'undecorated_tracker' (class UndecoratedTracker)" in msg
    assert "implements no vecaf_bench hook, so it observes nothing" in msg
    assert "vecaf_bench_run_end is not decorated" in msg and "@hookimpl from vecaf_bench.api" in msg
    assert not host.pm.is_registered(undecorated)

    good = host.trackers().get("good_tracker").factory(None, tmp_path)
    host.register_observer(good, "good_tracker")
    host.hook.vecaf_bench_run_end(run=None, summary={"status": "finished"})
    assert good.ended == ["finished"]
    host.pm.unregister(good)
    assert not host.pm.is_registered(good)


def test_builtin_trackers_register_as_observers(tmp_path):
    from vecaf_bench.config import RunConfig

    host = PluginHost()
    local = host.trackers().get("local").factory(RunConfig(), tmp_path)
    host.register_observer(local, "local")
    assert host.pm.is_registered(local)
    host.pm.unregister(local)


# -- 3. two plugins, one name ---------------------------------------------------------------------
def test_name_taken_by_a_builtin_names_both_origins(plugins, cli):
    mod = plugins(
        "dup_random",
        HEADER + GOOD_SELECTOR + '\n@hookimpl\ndef vecaf_bench_add_selectors():\n    return {"random": Good}\n',
    )
    msg = load_error(mod)
    assert "selector 'random' is registered twice" in msg
    assert "module 'vecaf_bench_plugins.selectors.random' of package 'vecaf-bench'" in msg
    assert "module 'dup_random' (loaded with --plugin dup_random)" in msg
    assert_cli_error(
        cli, ["list", "--plugin", mod], "selector 'random' is registered twice", "Rename it in one of the two"
    )


def test_two_packages_one_name(dist):
    source = HEADER + GOOD_SELECTOR + '\n@hookimpl\ndef vecaf_bench_add_selectors():\n    return {"greedy": Good}\n'
    dist("alpha-plugin", {"greedy": "alpha_greedy"}, {"alpha_greedy": source})
    dist("beta-plugin", {"greedy": "beta_greedy"}, {"beta_greedy": source})  # the same entry-point name too
    msg = load_error()
    assert "selector 'greedy' is registered twice" in msg
    assert "module 'alpha_greedy' of package 'alpha-plugin'" in msg
    assert "module 'beta_greedy' of package 'beta-plugin'" in msg


# -- 4. factories that break their contract ------------------------------------------------------
def _registering(kind: str, body: str) -> str:
    return HEADER + body + f"\n@hookimpl\ndef vecaf_bench_add_{kind}():\n    return FACTORIES\n"


CONTRACT_CASES = {
    "sel_list": ("selectors", "FACTORIES = [1, 2]", ["vecaf_bench_add_selectors returned list", "mapping of selector"]),
    "sel_none": ("selectors", "FACTORIES = None", ["returned None (is its return statement missing?)"]),
    "sel_noselect": (
        "selectors",
        "class NoSelect:\n    capabilities = Capabilities()\nFACTORIES = {'noselect': NoSelect}",
        ["selector 'noselect'", "(class NoSelect) from module", "has no select method", "select(self, ctx"],
    ),
    "sel_nocaps": (
        "selectors",
        "class NoCaps:\n    def select(self, ctx, count):\n        return []\nFACTORIES = {'nocaps': NoCaps}",
        [
            "selector 'nocaps' (class NoCaps) from module",
            "declares no capabilities",
            "capabilities = Capabilities(uses=",
        ],
    ),
    "sel_unknown_uses": (
        "selectors",
        "class Lables:\n    capabilities = Capabilities(uses={'lables'})\n    def select(self, ctx, count):\n"
        "        return []\nFACTORIES = {'lables': Lables}",
        ["selector 'lables'", "unknown uses ['lables']", "Did you mean 'labels'?"],
    ),
    "sel_dict_caps": (
        "selectors",
        "class DictCaps:\n    capabilities = {'uses': ['labels']}\n    def select(self, ctx, count):\n"
        "        return []\nFACTORIES = {'dictcaps': DictCaps}",
        ["selector 'dictcaps'", "has capabilities of type dict", "Capabilities(uses="],
    ),
    "sel_str_uses": (
        "selectors",
        "class StrUses:\n    uses = 'labels'\n    def select(self, ctx, count):\n        return []\n"
        "FACTORIES = {'struses': StrUses}",
        ["selector 'struses'", "declares uses='labels': it must be a set"],
    ),
    "sel_int": ("selectors", "FACTORIES = {'notcallable': 3}", ["selector 'notcallable'", "is int 3, not a class"]),
    "sel_name": ("selectors", "FACTORIES = {7: print}", ["registers a selector under the name 7", "non-empty strings"]),
    "backbone": ("backbones", "FACTORIES = {'bb': 'timm'}", ["backbone 'bb'", "not callable", "(model_name, weights"]),
    "dataset": ("datasets", "FACTORIES = {'ds': None}", ["dataset 'ds'", "not callable", "DatasetRequest"]),
    "tracker": ("trackers", "FACTORIES = {'tr': object()}", ["tracker 'tr'", "not callable", "(config, run_dir)"]),
    "shift": ("shifts", "FACTORIES = {'sh': 1.5}", ["shift 'sh'", "not callable"]),
    "text_encoder": ("text_encoders", "FACTORIES = {'te': []}", ["text encoder 'te'", "not callable"]),
    "import_raises": ("shifts", "FACTORIES = {}\n1 / 0", ["could not be imported", "ZeroDivisionError"]),
}


@pytest.mark.parametrize("case", list(CONTRACT_CASES))
def test_factory_breaking_its_contract_is_named(plugins, cli, case):
    kind, body, parts = CONTRACT_CASES[case]
    mod = plugins(f"contract_{case}", _registering(kind, body))
    msg = load_error(mod)
    assert f"module '{mod}'" in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    assert_cli_error(cli, ["list", "--plugin", mod], f"module '{mod}'", *parts)


def test_registration_hook_that_raises_is_named(plugins):
    mod = plugins(
        "raising_hook", HEADER + "\n@hookimpl\ndef vecaf_bench_add_datasets():\n    return {'x': undefined_name}\n"
    )
    msg = load_error(mod)
    assert "plugin module 'raising_hook'" in msg and "its vecaf_bench_add_datasets raised NameError" in msg
    assert "raising_hook.py:" in msg


def test_legacy_selectors_and_factory_functions_still_register(plugins, cli, monkeypatch):
    mod = plugins(
        "legacy_sels",
        """
        from vecaf_bench.api import hookimpl


        class LegacyLabels:
            uses = frozenset({"labels"})

            def select(self, ctx, count):
                return list(range(count))


        def make_greedy(**options):
            return LegacyLabels()


        @hookimpl
        def vecaf_bench_add_selectors():
            return {"legacy_labels": LegacyLabels, "made_greedy": make_greedy}
        """,
    )
    host = PluginHost([mod])
    assert {"legacy_labels", "made_greedy"} <= set(host.selectors().names())
    monkeypatch.setenv("COLUMNS", "200")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = cli("list", "selectors", "--plugin", mod)
    assert r.exit_code == 0, r.output
    assert not [w for w in caught if issubclass(w.category, VecafBenchDeprecationWarning)]
    rows = _rows(r.output)
    assert rows["legacy_labels"][-2] == "labels" and rows["legacy_labels"][1] == "--plugin legacy_sels"
    assert rows["made_greedy"][-2:] == ["?", "?"]  # a function is not called to find out


# -- 5. modules that do not import -----------------------------------------------------------------
def test_entry_point_that_fails_to_import(dist, cli):
    dist("broken-plugin", {"broken": "broken_ep_mod"}, {"broken_ep_mod": "import no_such_dependency_xyz\n"})
    assert_cli_error(
        cli,
        ["list"],
        "plugin module 'broken_ep_mod' of package 'broken-plugin' (entry point 'broken') failed to import",
        "ModuleNotFoundError",
        "pip uninstall broken-plugin",
    )


def test_plugin_flag_module_with_a_syntax_error(plugins, cli):
    mod = plugins("syntax_broken", "def oops(:\n    pass\n")
    assert_cli_error(cli, ["list", "--plugin", mod], "--plugin 'syntax_broken' could not be imported", "SyntaxError")


def test_plugin_flag_module_missing_a_dependency(plugins, cli):
    mod = plugins("needs_dep", "import no_such_dependency_abc\n")
    assert_cli_error(cli, ["list", "--plugin", mod], "--plugin 'needs_dep'", "imports 'no_such_dependency_abc'")


# -- the built-ins, and the list command ------------------------------------------------------------
def test_builtins_load_without_error():
    host = PluginHost()
    assert BUILTIN_SELECTORS <= set(host.selectors().names())
    for kind, registry in host.registries.items():
        assert registry.names(), kind
        for e in registry.entries():
            assert e.source == "vecaf-bench" and e.module.startswith("vecaf_bench_plugins."), e
    host.pm.check_pending()


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃]", line)[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return rows


def test_list_selectors_shows_module_and_reads(cli, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = cli("list", "selectors")
    assert r.exit_code == 0, r.output
    rows = _rows(r.output)
    assert rows["name"] == ["name", "package", "module", "version", "reads", "cold start"]
    assert rows["vecaf"][-2] == "labels, model, text"
    assert rows["random"][-2:] == ["features", "-"]
    assert rows["entropy"][-2:] == ["model", "random"]  # round 0 is picked by another selector
    assert rows["vecaf"][2] == "vecaf_bench_plugins.selectors.vecaf"
    assert BUILTIN_SELECTORS <= set(rows)
    other = _rows(cli("list", "backbones").output)
    assert other["name"] == ["name", "package", "module", "version"]


def test_list_selector_details_prints_its_card(cli):
    import vecaf_bench_plugins.selectors.vecaf as card

    r = cli("list", "selectors", "--details", "vecaf")
    assert r.exit_code == 0, r.output
    assert "reads: labels, model, text" in r.output
    assert card.__doc__.splitlines()[0] in r.output
    assert "CEA (text-augmented features)" in r.output
    assert_cli_error(
        cli, ["list", "selectors", "--details", "vecafx"], "unknown selector 'vecafx'", "Did you mean 'vecaf'?"
    )
