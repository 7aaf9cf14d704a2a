"""`vecaf-bench suite` and `vecaf-bench leaderboard`.

Plain typer command functions: cli.py registers them with `app.command()(friendly(suite))`, so
this module never imports cli.py (no import cycle) and tests can mount them on a typer app of
their own. The work is in `suite/` and `board/`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from .config import RunConfig
from .errors import UserError, check_folder_of

err = Console(stderr=True, emoji=False)


def suite(
    path: str = typer.Argument(..., help="Suite YAML, e.g. benchmarks/smoke.yaml."),
    out: str | None = typer.Option(
        None, help="Results folder (default: the suite's base.out, else runs/); runs go to <out>/<suite>/<run-id>/."
    ),
    executor: str = typer.Option(
        "local", help="local: in this process (with --max-parallel N: N `vecaf-bench run` processes) | submitit."
    ),
    max_parallel: int = typer.Option(1, help="How many runs (processes or jobs) at once."),
    set_: list[str] = typer.Option([], "--set", help="Override a base key for every run: --set device=cuda."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Expand and check the grid and list the runs; start none."),
    cluster: str | None = typer.Option(None, help="submitit cluster: slurm | local | debug (default: detected)."),
    slurm_partition: str | None = typer.Option(None, help="SLURM partition (submitit)."),
    gpus_per_node: int | None = typer.Option(
        None, help="GPUs per job (submitit; default: 1 on SLURM, locally 1 if there is a GPU)."
    ),
    tasks_per_node: int | None = typer.Option(
        None, help="Processes per job, joined into one run by torch.distributed (submitit; default: one per GPU)."
    ),
    timeout_min: int = typer.Option(240, help="Time limit of each job in minutes (submitit)."),
) -> None:
    """Run a benchmark suite (selectors x datasets x budgets x seeds); a re-run skips finished runs."""
    from .suite.execute import SuiteInterrupted, report_table, run_suite
    from .suite.grid import grid_table, load_suite, plan

    s = load_suite(path, out=out, sets=list(set_))
    stdout = Console(emoji=False)
    if dry_run:
        planned = plan(s)
        stdout.print(grid_table(planned))
        stdout.print(f"suite {s.name}: {len(planned)} runs -> {s.dir} (matched budgets: checked; dry run: none "
                     "started)", soft_wrap=True)
        return
    options = dict(cluster=cluster, slurm_partition=slurm_partition, gpus_per_node=gpus_per_node,
                   tasks_per_node=tasks_per_node,
                   timeout_min=timeout_min)
    try:
        report = run_suite(s, executor=executor, max_parallel=max_parallel, console=err, submitit_options=options)
    except SuiteInterrupted as e:
        err.print(
            f"[yellow]{e}[/] Run the same command again to go on: finished runs are skipped, interrupted ones resume "
            f"from their checkpoint. Status: {s.dir / 'suite.json'}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    stdout.print(report_table(report))
    stdout.print(f"status: {s.dir / 'suite.json'}   compare: vecaf-bench leaderboard {s.dir}", soft_wrap=True)
    if report.failed:
        err.print(
            f"[red]{len(report.failed)} run(s) failed[/]: "
            + "; ".join(f"{e['run_id']}: {e['error']}" + (f" (log: {e['log']})" if e.get("log") else "")
                        for e in report.failed[:5]),
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)


def leaderboard(
    directory: str | None = typer.Argument(
        None, metavar="DIR",
        help="Folder of runs (every summary.json under it; default: runs/, where run and suite write); "
             "not needed with --from-wandb.",
    ),
    fmt: str | None = typer.Option(
        None, "--format", help="table | markdown | csv | json | html (one self-contained page: tables, plots, "
                               "method cards, configs; with -o). Default: by the -o file's extension (.md, .csv, "
                               ".json, .html), else table."
    ),
    plot: str | None = typer.Option(
        None, help="Write the plots: FILE.png (accuracy vs batches) and FILE-budgets.png (budget sweep)."
    ),
    target: float | None = typer.Option(
        None, help="Target validation top-1 in percent (default: --target-fraction x full's best validation "
                   "top-1 at its longest batch budget on the dataset)."
    ),
    target_fraction: float = typer.Option(
        0.95, help="The target as a fraction of full's best validation top-1 (mean over seeds) at the longest "
                   "batch budget full ran on the dataset."
    ),
    reference: str = typer.Option(
        "activeft", help="Selector every row is also paired against (besides random): paired difference, 95% "
                         "interval, Wilcoxon p."
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Write the leaderboard to this file."),
    from_wandb: str | None = typer.Option(None, help="Read the runs from W&B project ENTITY/PROJECT instead."),
    wandb_mode: str | None = typer.Option(
        None, help="online | offline: log the table and plots to a W&B run of job type 'leaderboard'."
    ),
    wandb_project: str = typer.Option("vecaf-bench", help="W&B project to log to."),
    wandb_entity: str | None = typer.Option(None, help="W&B entity to log to."),
    expected: str | None = typer.Option(
        None, help="A suite file with an 'expected' section (e.g. benchmarks/paper-activeft.yaml): add a table of "
                   "every published number against these runs (within its tolerance, below, above, not run)."
    ),
) -> None:
    """Compare finished runs: final and best-on-validation accuracy (mean ± 95% CI over seeds), paired
    differences, batches to target, speed-up over full, compute, plots."""
    from .board import rules as lb
    from .board.plots import write_plots
    from .results import write_text_atomic

    fmt = lb.check_format(fmt, output)
    for flag, path in (("-o", output), ("--plot", plot)):  # before the runs are read, not after
        if path:
            check_folder_of(path, flag)
    published = None
    if expected:
        from .board import expected as ex

        if fmt == "csv":
            raise UserError("--expected adds a second table, which CSV cannot hold; use --format markdown, json or "
                            "table with it.")
        published = ex.load_expected(expected)
    if from_wandb:
        records, scan = lb.records_from_wandb(from_wandb), lb.RunScan()
        where = f"W&B project {from_wandb}"
    else:
        if directory is None:
            directory = RunConfig().out
            if not Path(directory).is_dir():
                raise UserError(f"no '{directory}' folder here (the default results folder of run and suite). "
                                "Give the folder of your runs, e.g. vecaf-bench leaderboard runs/smoke, or "
                                "--from-wandb ENTITY/PROJECT.")
        scan = lb.scan_runs(directory)
        records, where = scan.records, f"'{directory}'"
    if not records:
        raise UserError(scan.nothing_message(where))
    lb.fill_uses(records)
    board = lb.build_board(records, target=target, target_fraction=target_fraction, reference=reference)
    board.notes.extend(scan.notes())
    verdicts = ex.judge(board, published) if published is not None else []
    if fmt == "html":
        from .board.html import to_html

        extra = ex.to_markdown(published, verdicts) if published is not None else ""
        rendered: Any = to_html(board, source=where, extra_markdown=extra)
    else:
        rendered = lb.render(board, fmt)
    if published is not None and fmt != "html":
        if fmt == "markdown":
            rendered = str(rendered) + ex.to_markdown(published, verdicts)
        elif fmt == "json":
            import json

            rendered = json.dumps({**json.loads(str(rendered)), "expected": ex.to_json(published, verdicts)},
                                  indent=1) + "\n"
        else:
            from rich.console import Group

            rendered = Group(rendered, ex.to_rich(published, verdicts))
    if output:
        text = rendered if isinstance(rendered, str) else lb.to_markdown(board) + (
            ex.to_markdown(published, verdicts) if published is not None else "")
        write_text_atomic(Path(output), text)
        err.print(f"leaderboard written to {output}")
    elif isinstance(rendered, str):
        typer.echo(rendered, nl=False)
    else:
        term = Console(emoji=False)
        if not term.is_terminal:
            term = Console(emoji=False, width=240)  # piped: no terminal to fit, do not squeeze the columns
        term.print(rendered)
    plots = write_plots(board, plot) if plot else []
    for p in plots:
        err.print(f"plot: {p}")
    if wandb_mode and wandb_mode != "disabled":
        log_dir = Path(directory or ".")
        if not plots:
            plots = write_plots(board, log_dir / "leaderboard.png")
        run = lb.log_to_wandb(board, plots, wandb_mode, log_dir, project=wandb_project, entity=wandb_entity,
                              name=f"leaderboard-{Path(directory).name if directory else from_wandb}",
                              source=str(from_wandb or directory))
        err.print(f"W&B: leaderboard logged to run {run.id} ({wandb_mode}) under {log_dir / 'wandb'}")
