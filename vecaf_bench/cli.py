"""The `vecaf-bench` command line (typer + rich)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .config import description as config_description
from .errors import RunInterrupted, UserError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=False,
    help="Run and compare active-finetuning selectors under matched label and batch budgets.",
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, emoji=False)


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """User errors become one paragraph and exit code 2; never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None
        except RunInterrupted as e:
            import signal

            where = escape(str(e.run_dir))
            err.print(
                f"[yellow]Interrupted ({e.signal_name}) at step {e.step}/{e.total}.[/] The finished parts are on disk "
                f"in {where} (config.yaml, selected.json, events.jsonl, summary.json, checkpoint.pt).\n"
                f"Resume with: vecaf-bench run --resume {where}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(128 + getattr(signal, e.signal_name, signal.SIGINT)) from None
        except KeyboardInterrupt:
            err.print("[yellow]Interrupted before training started.[/] The pool features extracted so far are kept: "
                      "the same command continues their extraction where it stopped.", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None

    return wrapper


def _config_option(key: str, default: Any = None, *names: str) -> Any:
    """A `run` flag that sets config key KEY; its help is the key's description in the schema."""
    return typer.Option(default, *names, help=config_description(key))


@app.command()
@friendly
def run(
    # flags named after RunConfig fields (tests/test_config_schema.py checks the names and help texts)
    selector: str | None = _config_option("selector"),
    selection: str | None = _config_option("selection"),
    dataset: str | None = _config_option("dataset"),
    backbone: str | None = _config_option("backbone"),
    weights: str | None = _config_option("weights"),
    label_budget: str | None = _config_option("label_budget"),
    batch_budget: int | None = _config_option("batch_budget"),
    batch_size: int | None = _config_option("batch_size"),
    rounds: int | None = _config_option("rounds"),
    eval_every: int | None = _config_option("eval_every"),
    seed: int | None = _config_option("seed"),
    device: str | None = _config_option("device"),
    image_size: int | None = _config_option("image_size"),
    out: str | None = _config_option("out"),
    config: str | None = typer.Option(None, help="YAML config file (flags and --set override it)."),
    set_: list[str] = typer.Option([], "--set", help="Override any config key: --set train.lr=0.01 (repeatable)."),
    plugin: list[str] = _config_option("plugins", []),
    data_root: str | None = _config_option("data_root"),
    shifts: list[str] = _config_option("shifts", [], "--shift"),
    on_corrupt: str | None = _config_option("on_corrupt"),
    cache_dir: str | None = _config_option("cache_dir"),
    wandb_mode: str | None = _config_option("wandb_mode"),
    wandb_project: str | None = _config_option("wandb_project"),
    wandb_group: str | None = _config_option("wandb_group"),
    resume: str | None = typer.Option(None, help="Continue an interrupted run from its folder."),
) -> None:
    """Select, finetune and evaluate once; print the result and write it under --out."""
    from .cli_output import print_run_summary
    from .config import build_config
    from .pluginmanager import PluginHost

    # the runner imports torch and timm (seconds): only after the input is checked
    flags = dict(
        selector=selector,
        selection=selection,
        dataset=dataset,
        backbone=backbone,
        weights=weights,
        label_budget=label_budget,
        batch_budget=batch_budget,
        batch_size=batch_size,
        rounds=rounds,
        eval_every=eval_every,
        seed=seed,
        device=device,
        image_size=image_size,
        out=out,
        data_root=data_root,
        on_corrupt=on_corrupt,
        cache_dir=cache_dir,
        wandb_mode=wandb_mode,
        wandb_project=wandb_project,
        wandb_group=wandb_group,
        plugins=list(plugin) or None,
        shifts=list(shifts) or None,
    )
    if resume:
        if config:
            raise UserError(
                f"--config {config} cannot be given with --resume: a resumed run keeps the config it started with "
                f"(in {resume}/config.yaml)."
            )
        from .runner import Runner

        summary = Runner.resume(resume, console=err, flags=flags, sets=list(set_))
        print_run_summary(summary, resume)
        return
    cfg = build_config(config, flags, list(set_))
    host = PluginHost(cfg.plugins)
    host.check_run_names(cfg)
    from .run.selection_round import check_selector_options

    if not cfg.selection:
        check_selector_options(host, cfg.selector, cfg.selector_options)
    from .run.recipes import check_recipe_options

    check_recipe_options(host, cfg.recipe, cfg.recipe_options)
    from .runner import Runner

    summary = Runner(cfg, console=err, host=host).run()
    print_run_summary(summary, Path(cfg.out) / summary["run_id"])


@app.command()
@friendly
def select(
    dataset: str | None = typer.Option(
        None, help="A folder of images to choose from (flat, nested or class folders); picks are paths in it."
    ),
    features: str | None = typer.Option(None, help="Or: pool features, an (N, d) .npy file; picks are row indices."),
    budget: str = typer.Option(..., help="Images to select: a count (100) or a fraction (0.05, 5%)."),
    selector: str = typer.Option("random", help="Selector plugin name (label-free ones on a folder)."),
    out: str = typer.Option(
        ..., help="Picks file: .csv, .jsonl or .json (Label Studio); with --features, a JSON list of indices."
    ),
    backbone: str = typer.Option("timm:tf_efficientnet_lite0", help="With --dataset: the feature backbone."),
    weights: str = typer.Option("default", help="With --dataset: default | hub | shipped | none | PATH."),
    image_size: int | None = typer.Option(None, help="With --dataset: input size (default: the backbone's)."),
    format_: str | None = typer.Option(None, "--format", help="csv | jsonl | label-studio (default: by extension)."),
    url_prefix: str | None = typer.Option(
        None, help="Label Studio: data.image = this prefix + the path (e.g. /data/local-files/?d=photos/)."
    ),
    selected: list[str] = typer.Option(
        [], help="Earlier picks, kept and grown (a picks file; with --features a JSON list of indices; repeatable)."
    ),
    exclude: list[str] = typer.Option([], help="With --dataset: picks files of images never to pick (repeatable)."),
    preview: str | None = typer.Option(None, help="With --dataset: a contact sheet of the picks and a random draw."),
    labels: str | None = typer.Option(
        None, help="With --features: (N,) integer labels .npy, for label-using selectors."),
    seed: int = typer.Option(0, help="Seed."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
    set_: list[str] = typer.Option([], "--set", help="Selector option: --set tau=0.07 (repeatable)."),
    plugin: list[str] = typer.Option([], help="Import a plugin module that is not installed (repeatable)."),
    on_corrupt: str = typer.Option("skip", help="With --dataset: skip | error on an image that fails to decode."),
    cache_dir: str | None = typer.Option(
        None, help="Feature cache (default: $VECAF_BENCH_CACHE, ~/.cache/vecaf-bench)."),
    batch_size: int = typer.Option(64, help="With --dataset: images per feature-extraction batch."),
    num_workers: int = typer.Option(0, help="With --dataset: DataLoader workers decoding images."),
) -> None:
    """Choose what to label: one selector on a folder of images (or on precomputed features)."""
    if (dataset is None) == (features is None):
        raise UserError("select needs one of --dataset FOLDER (a folder of images) or --features F.npy (an (N, d) "
                        "array), not both and not neither.")
    if on_corrupt not in ("skip", "error"):
        raise UserError(f"--on-corrupt '{on_corrupt}' is unknown; use skip or error.")
    if features is not None:
        folder_only = [f for f, v in (("--exclude", exclude), ("--preview", preview), ("--url-prefix", url_prefix),
                                      ("--format", format_)) if v]
        if folder_only:
            raise UserError(f"{', '.join(folder_only)} work with --dataset FOLDER (picks are image paths); with "
                            "--features the picks are row indices.")
        if len(selected) > 1:
            raise UserError("with --features, give one --selected file (a JSON list of indices).")
        from .selectfile import select_from_files

        select_from_files(
            features=features, budget=budget, selector=selector, labels=labels,
            selected=selected[0] if selected else None, seed=seed, device=device, options=list(set_),
            plugins=list(plugin), out=out, console=err,
        )
        return
    if labels is not None:
        raise UserError("--labels goes with --features; on a folder a label-using selector reads the class folders.")
    from .selectfolder import select_from_folder

    assert dataset is not None
    select_from_folder(
        dataset=dataset, budget=budget, selector=selector, out=out, backbone=backbone, weights=weights,
        image_size=image_size, fmt=format_, url_prefix=url_prefix, selected=list(selected), exclude=list(exclude),
        preview=preview, seed=seed, device=device, options=list(set_), plugins=list(plugin), cache_dir=cache_dir,
        on_corrupt=on_corrupt, batch_size=batch_size, num_workers=num_workers, console=err,
    )


@app.command("list")
@friendly
def list_(
    kind: str | None = typer.Argument(
        None, help="selectors, backbones, recipes, datasets, text_encoders, shifts or trackers (default: all)."
    ),
    plugin: list[str] = typer.Option([], help="Also import this plugin module (repeatable)."),
    details: str | None = typer.Option(
        None,
        "--details",
        metavar="NAME",
        help="Print one plugin's card, its module's docstring (`list selectors --details vecaf`).",
    ),
) -> None:
    """Every registered plugin, with the package, module and version that provide it; for
    selectors also what they read beyond the pool features (their declared uses)."""
    import inspect
    import sys

    from rich.text import Text

    from .api import Capabilities
    from .errors import unknown
    from .pluginmanager import PluginHost
    from .registry import KINDS, Entry
    from .run.selection_round import declared_capabilities

    def caps(e: Entry) -> Capabilities | None:
        return declared_capabilities(e)

    def reads(e: Entry) -> str:
        c = caps(e)
        return "?" if c is None else ", ".join(sorted(c.uses)) or "features"

    def cold_start(e: Entry) -> str:
        """Who picks round 0 (the head is untrained there): another selector, or the selector itself."""
        c = caps(e)
        return "?" if c is None else c.cold_start or "-"

    host = PluginHost(plugin)
    kinds = list(KINDS)
    if kind is not None:
        k = kind if kind.endswith("s") else kind + "s"
        if k not in KINDS:
            raise unknown("plugin kind", kind, KINDS)
        kinds = [k]
    if details is not None:
        k = kinds[0] if kind is not None else "selectors"
        entry = host.registries[k].get(details)
        f = entry.factory
        modname = f.__module__ if inspect.isclass(f) or inspect.isfunction(f) else entry.module.partition(":")[0]
        doc = inspect.getdoc(sys.modules[modname]) if modname in sys.modules else None
        card = Console(emoji=False, highlight=False)
        card.print(Text(f"{entry.name} ({k[:-1].replace('_', ' ')})", style="bold"))
        card.print(Text(f"package {entry.source} {entry.version}, module {modname}"), soft_wrap=True)
        if k == "selectors":
            card.print(Text(f"reads: {reads(entry)}"))
        card.print()
        card.print(Text(doc or f"(module {modname} has no docstring)"), soft_wrap=True)
        return
    out = Console(emoji=False)
    for k in kinds:
        table = Table(title=k, title_justify="left")
        table.add_column("name", style="bold", no_wrap=True)
        table.add_column("package")
        table.add_column("module", overflow="fold")
        table.add_column("version")
        if k == "selectors":
            table.add_column("reads", no_wrap=True)
            table.add_column("cold start", no_wrap=True)
        for e in host.registries[k].entries():
            row = [e.name, e.source, e.module, e.version] + ([reads(e), cold_start(e)] if k == "selectors" else [])
            table.add_row(*(Text(v) for v in row))
        out.print(table)


data_app = typer.Typer(
    no_args_is_help=True,
    help="Named datasets (ImageNet, ImageNet-R, CIFAR, ...): where they are looked for, and putting them in place.",
)
app.add_typer(data_app, name="data")


def _data_source(host: Any, name: str) -> Any:
    entry = host.datasets().get(name)
    source = getattr(entry.factory, "source", None)
    if source is None:
        raise UserError(
            f"dataset '{name}' (from {entry.source}) is not read from the data root: it ships inside an installed "
            "package, or its plugin does not describe its files. There is nothing to prepare."
        )
    return source


@data_app.command("prepare")
@friendly
def data_prepare(
    name: str = typer.Argument(..., help="Dataset name (see `vecaf-bench data list`)."),
    from_: str | None = typer.Option(
        None, "--from", help="Archive (.tar, .tar.gz, .zip) or folder: a path or a URL (default: the official URL)."
    ),
    data_root: str | None = typer.Option(None, help="Where datasets live (default: $VECAF_BENCH_DATA, else ~/.cache)."),
    sha256: str | None = typer.Option(None, help="Refuse the archive unless its SHA-256 is this."),
    link: bool = typer.Option(False, "--link", help="With a folder: link it into the data root instead of copying."),
    force: bool = typer.Option(False, "--force", help="Replace the dataset if it is already there."),
    plugin: list[str] = typer.Option([], help="Also import this plugin module (repeatable)."),
) -> None:
    """Download or copy a dataset, check its checksum and unpack it into the data root, atomically."""
    from .datastore import prepare_dataset
    from .pluginmanager import PluginHost

    source = _data_source(PluginHost(plugin), name)
    try:
        done = prepare_dataset(source, from_, data_root, sha256=sha256, force=force, link=link, console=err)
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted: nothing was put in place (the partial files were removed).")
        raise typer.Exit(130) from None
    out = Console(highlight=False, emoji=False)
    out.print(f"[bold]{name}[/] is ready at {done.path}" + (" (a link)" if done.linked else ""), soft_wrap=True)
    rows = [("from", done.origin)]
    if done.file:
        rows += [("archive", f"{done.file}, {done.size:,} bytes"), ("sha256", str(done.sha256)), ("md5", str(done.md5))]
    rows += [("checked", done.verified), ("manifest", str(done.manifest))]
    for key, value in rows:
        out.print(f" {key:<9} {value}", soft_wrap=True)
    root_flag = f" --data-root {data_root}" if data_root else ""
    out.print(f"Run: vecaf-bench run --dataset {name}{root_flag}", soft_wrap=True)


@data_app.command("list")
@friendly
def data_list(
    data_root: str | None = typer.Option(None, help="Where datasets live (default: $VECAF_BENCH_DATA, else ~/.cache)."),
    plugin: list[str] = typer.Option([], help="Also import this plugin module (repeatable)."),
) -> None:
    """Every dataset, where it is looked for, and whether it is there."""
    from .datastore import resolve_data_root
    from .pluginmanager import PluginHost

    host = PluginHost(plugin)
    root, origin = resolve_data_root(data_root)
    out = Console(highlight=False, emoji=False)
    out.print(f"data root: {root} ({origin})", soft_wrap=True)
    table = Table(title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("where (under the data root)", overflow="fold")
    for e in host.datasets().entries():
        source = getattr(e.factory, "source", None)
        if source is None:
            table.add_row(e.name, "built in", f"inside package {e.source}")
            continue
        found, _ = source.find(root)
        if found is not None:
            table.add_row(e.name, "[green]ready", str(found))
        else:
            table.add_row(e.name, "[yellow]missing", "looked for " + ", ".join(source.folders))
    out.print(table)
    out.print("Put a missing one in place with: vecaf-bench data prepare NAME --from PATH_OR_URL", soft_wrap=True)


from .cli_suite import leaderboard, suite  # noqa: E402

app.command()(friendly(suite))
app.command()(friendly(leaderboard))


def main() -> None:
    app(prog_name="vecaf-bench")


if __name__ == "__main__":
    main()
