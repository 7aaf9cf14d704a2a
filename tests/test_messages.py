"""The messages issue 15 found misleading, each as a user meets it: exit 2, no traceback, one
paragraph that names the thing, the value and what to do (the closest match where there is a
name). Other files test the faults (resume, folders, suites, select's inputs); this one holds the
catalogue of rewritten messages, so a message that drifts back fails here by name."""

from __future__ import annotations

import numpy as np
import pytest

from vecaf_bench.errors import UserError
from vecaf_bench.text import load_captions


def refused(result) -> str:
    """The one error paragraph of a refused command, with its line breaks undone."""
    text = result.output
    assert result.exit_code == 2, text
    assert "Traceback" not in text
    assert text.lstrip().startswith("error:"), text
    return " ".join(text.split())


def test_a_nan_learning_rate_is_refused_not_trained_to_chance(cli, tmp_path):
    msg = refused(cli("run", "--set", "train.lr=.nan", "--out", tmp_path / "o"))
    assert "config key 'train.lr' (--set) must be a finite number, got nan. Fix the value" in msg
    assert not (tmp_path / "o").exists()


def test_an_infinite_value_anywhere_is_refused(cli, tmp_path):
    msg = refused(cli("run", "--set", "train.lr=-inf", "--out", tmp_path))
    assert "config key 'train.lr' (--set) must be a finite number, got '-inf'" in msg
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  weight_decay: .inf\n")
    msg = refused(cli("run", "--config", cfg, "--out", tmp_path))
    assert "'train.weight_decay'" in msg and "must be a finite number" in msg and str(cfg) in msg


def test_more_rounds_than_labels_is_refused_with_the_largest_that_fits(cli, tmp_path):
    msg = refused(cli("run", "--rounds", "20", "--label-budget", "10", "--out", tmp_path))
    assert ("--rounds 20 with label_budget 10 leaves rounds that pick no image (each budget is split evenly "
            "over the rounds): use --rounds 10 or fewer, or a larger --label-budget.") in msg


def test_more_rounds_than_batches_is_refused(cli, tmp_path):
    msg = refused(cli("run", "--rounds", "3", "--label-budget", "30", "--batch-budget", "2", "--out", tmp_path))
    assert "--rounds 3 with batch_budget 2 leaves rounds that train for no optimizer step" in msg
    assert "use --rounds 2 or fewer, or a larger --batch-budget" in msg


def test_a_section_given_a_value_says_it_is_a_section_not_unknown(cli, tmp_path):
    msg = refused(cli("run", "--set", "train=5", "--out", tmp_path))
    assert "config key 'train' (--set) is a section, not a value, got 5" in msg
    assert "set its keys as train.<key> (e.g. --set train.lr=0.01)" in msg and "Keys of train: opt, lr," in msg
    assert "unknown" not in msg


def test_an_unknown_timm_model_gets_the_closest_names_not_all_of_them(cli, tmp_path):
    msg = refused(cli("run", "--backbone", "timm:resnet1", "--out", tmp_path))
    assert "unknown timm model 'resnet1' (--backbone timm:resnet1). Did you mean 'resnet18'?" in msg
    assert "timm.list_models('*resnet*')" in msg
    assert len(msg) < 600, "the ~1,300 model names are not listed"
    msg = refused(cli("run", "--backbone", "timm:nosuchmodel", "--out", tmp_path))
    assert "No timm name is close to it" in msg and len(msg) < 600


def test_a_text_file_as_weights_says_what_it_is_and_what_is_expected(cli, tmp_path):
    weights = tmp_path / "weights.txt"
    weights.write_text("hello\n")
    msg = refused(cli("run", "--weights", weights, "--out", tmp_path / "o"))
    assert f"--weights '{weights}' is not a checkpoint torch or safetensors can read" in msg
    assert "it is a text file, starting 'hello'" in msg
    assert "state_dict of timm model 'tf_efficientnet_lite0'" in msg and "--weights default, hub or none" in msg
    assert "pop from empty list" not in msg and "IndexError" not in msg


def test_a_selector_option_of_the_wrong_type_is_named_with_its_type_and_default(cli, tmp_path):
    msg = refused(cli("run", "--selector", "activeft", "--set", "selector_options.tau=abc", "--out", tmp_path))
    assert ("selector 'activeft' option 'tau' must be a finite number (float), got 'abc' "
            "(--set selector_options.tau=...); its default is 0.07.") in msg
    assert "not supported between" not in msg


def test_a_misspelled_selector_option_gets_the_closest_and_the_list(cli, tmp_path):
    msg = refused(cli("run", "--selector", "activeft", "--set", "selector_options.taus=0.1", "--out", tmp_path))
    assert "selector 'activeft' does not take option(s) 'taus' (--set selector_options.taus=...)." in msg
    assert "Did you mean 'tau'? It accepts: tau, lam, lr, iterations" in msg


def test_an_option_for_a_selector_without_options_says_so(cli, tmp_path):
    msg = refused(cli("run", "--selector", "random", "--set", "selector_options.chunk=4096", "--out", tmp_path))
    assert "selector 'random' does not take option(s) 'chunk'" in msg and "It accepts: no options." in msg


def test_a_misspelled_text_encoder_is_refused_before_the_run(cli, tmp_path):
    msg = refused(cli("run", "--selector", "vecaf", "--set", "text_encoder=minlm", "--out", tmp_path / "o"))
    assert "unknown text encoder 'minlm'; known: minilm, open_clip. Did you mean 'minilm'?" in msg
    assert "--set text_encoder=" in msg
    assert not (tmp_path / "o").exists(), "refused before the run made its folder"


def test_missing_captions_advise_the_config_key_not_a_flag_that_does_not_exist(tmp_path):
    f = tmp_path / "caps.csv"
    f.write_text("index,caption\n0,a cat\n")
    with pytest.raises(UserError) as e:
        load_captions(f, 3)
    msg = str(e.value)
    assert f"captions file '{f}' has no caption for 2 of 3 pool samples" in msg
    assert "--set captions=none" in msg and "'captions:' line of the config file" in msg
    assert "leave out --captions" not in msg


@pytest.mark.parametrize("suffix, delimiter", [(".csv", "','"), (".txt", "None"), (".tsv", "'\\t'")])
def test_select_on_a_text_table_says_how_to_make_the_npy(cli, tmp_path, suffix, delimiter):
    f = tmp_path / f"feats{suffix}"
    f.write_text("1,2\n3,4\n")
    msg = refused(cli("select", "--features", f, "--budget", "1", "--out", tmp_path / "x.json"))
    assert f"features file '{f}' is not a .npy file" in msg
    assert f"np.save('feats.npy', np.loadtxt('{f}', delimiter={delimiter}))" in msg
    assert "allow_pickle" not in msg


def test_select_names_a_nan_row(cli, tmp_path):
    feats = np.ones((6, 3), dtype=np.float32)
    feats[4, 1] = np.nan
    np.save(tmp_path / "f.npy", feats)
    msg = refused(cli("select", "--features", tmp_path / "f.npy", "--budget", "2", "--selector", "coreset",
                      "--out", tmp_path / "x.json"))
    assert "has NaN or infinite values in 1 row(s) (4) of 6" in msg and "np.isfinite(F).all(axis=1)" in msg


def test_brackets_in_a_message_are_printed_not_taken_as_markup(cli, tmp_path):
    """Rich reads `[word]` as a style tag; a message quoting a path with brackets must arrive whole."""
    folder = tmp_path / "photos[bold]"
    msg = refused(cli("run", "--dataset", folder, "--out", tmp_path / "o"))
    assert f"dataset folder '{folder}' does not exist" in msg


def test_a_suite_checks_every_selectors_options_before_any_run(tmp_path):
    """`--set selector_options.tau=...` on a suite reaches every selector: the one that takes no such
    option is named before anything starts, with where a per-selector option goes."""
    from typer.testing import CliRunner

    from vecaf_bench.cli import app

    suite = tmp_path / "s.yaml"
    suite.write_text("name: s\nselectors: [activeft, random]\ndatasets: [digits]\nlabel_budgets: [10]\n"
                     "batch_budgets: [4]\nseeds: [0]\n")
    r = CliRunner().invoke(app, ["suite", str(suite), "--dry-run", "--set", "selector_options.tau=0.1",
                                 "--out", str(tmp_path / "o")], catch_exceptions=False)
    msg = refused(r)
    assert f"suite '{suite}', run s-digits-10-b4-random-s0: selector 'random' does not take option(s) 'tau'" in msg
    assert "selectors: [{name: random, selector_options: {KEY: VALUE}}]" in msg
    assert not (tmp_path / "o").exists()
