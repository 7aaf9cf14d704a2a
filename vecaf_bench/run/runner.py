"""One run, in stages: setup -> features -> rounds of (selection, training, evaluation) -> results.

The runner owns the budgets. A selector only sees the read-only context of its round; it never
trains and never sees the test split. Each stage is its own module (`features`,
`selection_round`, `training`, `evaluation`, `summary`); this one only sequences them and owns
the run's state for checkpoints. Ctrl-C stops after the current optimizer step, saves a
checkpoint beside the results, and `vecaf-bench run --resume RUN_DIR` continues.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console

from .. import sync_batchnorm
from ..api import RoundRecord, RunInfo
from ..budget import resolve_label_budget, split_evenly
from ..config import RunConfig, config_from_dict, dump_yaml, load_yaml
from ..data import DatasetSplits
from ..device import resolve_device
from ..errors import PluginError, UserError
from ..pluginmanager import PluginHost
from ..progress import make_progress
from ..results import CHECKPOINT, CONFIG, RunFiles, read_summary
from ..seeding import rng_state, seed_everything
from ..shifts import OODSplit, ShiftRequest, parse_shift
from ..transforms import Normalize, data_config_for, eval_transform, train_transform
from .annotations import text_features
from .evaluation import Evaluator
from .features import pool_features
from .outputs import outputs_provider
from .rank import NoHooks, Rank
from .selection_round import SelectorSlot, build_context, make_selector, run_selection
from .setup import check_batch_norm, load_dataset, make_run_dir, parse_backbone
from .summary import build_summary
from .training import Trainer


class RunInterrupted(Exception):
    def __init__(self, run_dir: Path, step: int, total: int) -> None:
        super().__init__(f"interrupted at step {step}/{total}")
        self.run_dir, self.step, self.total = run_dir, step, total


class _Stop(Exception):
    pass


@contextmanager
def _sigint_after_step(console: Console) -> Iterator[dict[str, bool]]:
    """First Ctrl-C: finish the current step, then stop cleanly. Second: stop at once."""
    flag = {"set": False}
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        if flag["set"]:
            raise KeyboardInterrupt
        flag["set"] = True
        console.print("[yellow]Ctrl-C: stopping after the current step (press again to stop at once)…")

    try:
        signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


@dataclass
class _Run:
    """What the stages of one run share."""

    info: RunInfo
    files: RunFiles
    slot: SelectorSlot
    cold: SelectorSlot | None
    backbone: Any
    splits: DatasetSplits
    ood: list[OODSplit]
    device: torch.device
    hook: Any
    ckpt: dict[str, Any] | None
    wall_start: float
    model: torch.nn.Module
    t_split: list[int] = field(default_factory=list)
    b_split: list[int] = field(default_factory=list)
    sel_rounds: list[np.ndarray] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    text: Any = None


class Runner:
    def __init__(self, cfg: RunConfig, console: Console | None = None, host: PluginHost | None = None) -> None:
        self.cfg = cfg
        self.console = console or Console(stderr=True, emoji=False)
        self.host = host or PluginHost(cfg.plugins)
        self.rank = Rank()

    @classmethod
    def resume(cls, run_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
        files = RunFiles(run_dir)
        if not files.path(CONFIG).is_file():
            raise UserError(f"--resume '{files.dir}' is not a run folder (no config.yaml in it).")
        if not files.has_checkpoint():
            summary = read_summary(files.dir)
            if summary is not None and summary.get("status") == "finished":
                raise UserError(f"run '{files.dir}' has already finished; nothing to resume.")
            raise UserError(
                f"run '{files.dir}' has no {CHECKPOINT} to resume from; start it again with vecaf-bench run."
            )
        cfg = config_from_dict(load_yaml(files.path(CONFIG)), f"in {files.path(CONFIG)}")
        return cls(cfg, console).run(run_dir=files.dir)

    # -- stage 0: setup -------------------------------------------------------------------------
    def run(self, run_dir: Path | None = None) -> dict[str, Any]:
        cfg = self.cfg
        wall_start = time.perf_counter()
        slot = make_selector(self.host, cfg.selector, cfg.selector_options)
        cold = self._cold_start(slot)
        device = self.rank.start(resolve_device(cfg.device), cfg.batch_size)
        if not self.rank.main:
            self.console = Console(quiet=True)  # rank 0 alone prints, writes and logs
        try:
            return self._start(slot, cold, device, run_dir, wall_start)
        finally:
            self.rank.stop()

    def _cold_start(self, slot: SelectorSlot) -> SelectorSlot | None:
        """The selector of round 0 (untrained head): the config's `cold_start`, else the one the
        selector's capabilities name; None when the selector picks round 0 itself."""
        name = self.cfg.cold_start or slot.capabilities.cold_start
        if name in (None, "self", slot.name):
            return None
        hint = "It is cold_start's value: name a label-free selector for round 0, or self."
        self.host.selectors().get(name, hint=hint)
        cold = make_selector(self.host, name)
        if cold.capabilities.whole_pool or "model" in cold.capabilities.uses:
            raise UserError(
                f"cold_start '{name}' cannot pick round 0: it "
                f"{'takes the whole pool' if cold.capabilities.whole_pool else 'needs a trained model'}. "
                "Name a label-free selector such as random, coreset or activeft."
            )
        if self.cfg.rounds == 1:
            self.console.print(
                f"[yellow]{slot.name} runs with one round: round 0 is picked by its cold-start selector '{name}', so "
                f"{slot.name} itself picks nothing. Use --rounds 2 or more (or --set cold_start=self)."
            )
        return cold

    def _start(
        self, slot: SelectorSlot, cold: SelectorSlot | None, device: torch.device, run_dir: Path | None, wall: float
    ) -> dict[str, Any]:
        cfg, host, rank = self.cfg, self.host, self.rank
        bb_prefix, bb_name = parse_backbone(cfg.backbone)
        backbone = host.backbones().get(bb_prefix).factory(bb_name, weights=cfg.weights)
        tracker_factories = [host.trackers().get(t) for t in cfg.trackers]
        shift_factories = [(s, host.shifts().get(parse_shift(s)[0]).factory) for s in cfg.shifts]
        with rank.main_first():  # rank 0 fills the file index and the shift cache, the others read them
            splits = load_dataset(host, cfg)
            # OOD splits before the run folder: a bad --shift leaves nothing behind
            input_size = data_config_for(backbone.data_config, cfg.image_size or splits.default_image_size)
            ood = self._ood_splits(splits, shift_factories, int(input_size["input_size"][-1]))
        pool_size = len(splits.pool)
        if rank.world > pool_size:
            raise UserError(f"torchrun started {rank.world} processes for a pool of {pool_size} images; use fewer.")
        whole = slot.capabilities.whole_pool
        label_budget = pool_size if whole else resolve_label_budget(cfg.label_budget, pool_size)
        model = self._model(backbone, splits, device)  # before the run folder: a bad batch size leaves nothing
        ckpt = None
        if run_dir is not None:
            ckpt = RunFiles(run_dir).load_checkpoint()
        else:
            if rank.main:
                run_dir = make_run_dir(cfg)
                RunFiles(run_dir).write_config(dump_yaml(cfg))
            run_dir = Path(rank.broadcast(str(run_dir)))
        uses = slot.capabilities.uses | (cold.capabilities.uses if cold else frozenset())
        info = RunInfo(
            config=cfg,
            run_id=run_dir.name,
            run_dir=run_dir,
            pool_size=pool_size,
            test_size=len(splits.test),
            num_classes=splits.num_classes,
            label_budget=label_budget,
            device=str(device),
            uses=sorted(uses),
            resumed=ckpt is not None,
        )
        trackers = [(e.name, e.factory(cfg, run_dir)) for e in tracker_factories] if rank.main else []
        run = _Run(
            info, RunFiles(run_dir, writer=rank.main), slot, cold, backbone, splits, ood, device,
            host.hook if rank.main else NoHooks(), ckpt, wall, model,
        )
        try:
            for name, t in trackers:
                host.register_observer(t, name)
            return self._execute(run)
        finally:
            for _, t in trackers:
                if host.pm.is_registered(t):
                    host.pm.unregister(t)

    def _ood_splits(self, splits: DatasetSplits, factories: list[tuple[str, Any]], image_size: int) -> list[OODSplit]:
        """The OOD splits the run's shifts make, checked: unique names, labels in the run's classes."""
        cfg = self.cfg
        out: list[OODSplit] = []
        for text, factory in factories:
            name, spec = parse_shift(text)
            request = ShiftRequest(
                spec=spec,
                splits=splits,
                seed=cfg.shift_seed,
                image_size=image_size,
                load_dataset=lambda other: load_dataset(self.host, cfg.replace(dataset=other)),
                cache_dir=cfg.cache_dir,
                console=self.console,
            )
            made = list(factory(request))
            if not made:
                raise PluginError(f"shift '{text}' made no OOD split; its plugin must return at least one.")
            for o in made:
                labels = np.asarray(o.images.labels)
                if len(labels) == 0:
                    raise UserError(f"OOD split '{o.name}' (shift '{text}') holds no images.")
                if labels.min() < 0 or labels.max() >= splits.num_classes:
                    raise PluginError(
                        f"shift '{name}' returned split '{o.name}' with labels outside the run's "
                        f"{splits.num_classes} classes; map them with vecaf_bench.api.align_classes."
                    )
                if any(o.name == p.name for p in out):
                    raise UserError(f"OOD split '{o.name}' is named twice; give each --shift once.")
                out.append(o)
        if out:
            self.console.print(
                f"ood: {len(out)} split(s): {', '.join(o.name for o in out[:6])}{' …' if len(out) > 6 else ''}"
            )
        return out

    # -- stages 1-4 -----------------------------------------------------------------------------
    def _execute(self, run: _Run) -> dict[str, Any]:
        cfg, splits = self.cfg, run.splits
        dcfg = data_config_for(run.backbone.data_config, cfg.image_size or splits.default_image_size)
        normalize = Normalize(dcfg, run.device)
        t_eval = eval_transform(dcfg)
        t_train = train_transform(dcfg, cfg.train.augment, splits.augment)
        eval_bs = max(cfg.batch_size, 64)
        model = run.model
        run.files.event(
            "resume" if run.info.resumed else "start",
            run_id=run.info.run_id,
            pool_size=run.info.pool_size,
            test_size=run.info.test_size,
            label_budget=run.info.label_budget,
            device=run.info.device,
        )
        run.hook.vecaf_bench_run_start(run=run.info)
        feats, feature_info = pool_features(
            backbone=run.backbone, model=model, pool=splits.pool, transform=t_eval, normalize=normalize,
            input_size=dcfg["input_size"], batch_size=eval_bs, num_workers=cfg.train.num_workers,
            cache_dir=cfg.cache_dir, rank=self.rank, console=self.console,
        )
        run.t_split = split_evenly(cfg.batch_budget, cfg.rounds)
        whole = run.slot.capabilities.whole_pool
        run.b_split = [run.info.label_budget] + [0] * (cfg.rounds - 1) if whole else split_evenly(
            run.info.label_budget, cfg.rounds
        )
        trainer = Trainer(cfg, model, run.device, self.rank)
        ood_every = cfg.eval_every if cfg.ood_eval_every is None else cfg.ood_eval_every
        evaluator = Evaluator(
            model, splits.test, run.ood, t_eval, normalize, eval_bs, cfg.train.num_workers, ood_every, cfg.batch_budget
        )
        if run.ckpt is not None:
            trainer.restore(run.ckpt)
            run.sel_rounds = [np.asarray(r, dtype=np.int64) for r in run.ckpt["selected"]]
            run.records = list(run.ckpt["records"])
            evaluator.restore(run.ckpt["curve"], run.ckpt.get("ood_curves", {}))
            self.console.print(f"resuming {run.info.run_id} at step {trainer.step}/{cfg.batch_budget}")
        outputs = (normalize, t_eval, t_train, eval_bs)
        interrupted = self._rounds(run, feats, trainer, evaluator, outputs)
        return self._finish(run, trainer, evaluator, feature_info, interrupted)

    def _model(self, backbone: Any, splits: DatasetSplits, device: torch.device) -> torch.nn.Module:
        cfg = self.cfg
        seed_everything(cfg.seed)
        model = backbone.create_model(splits.num_classes, drop_path=cfg.train.drop_path)
        check_batch_norm(model, cfg.batch_size, self.rank.world, cfg.backbone)
        if self.rank.active:  # batch statistics of the global batch, on GPUs and on the CPU
            model, per_rank_bn = sync_batchnorm.convert(model, device.type)
            if per_rank_bn:
                self.console.print(
                    f"[yellow]torchrun: {len(per_rank_bn)} BatchNorm layer(s) of a kind that cannot be synchronised "
                    f"({per_rank_bn[0]}, …) normalise each process's slice of the batch."
                )
        return model.to(device)

    def _rounds(
        self, run: _Run, feats: np.ndarray | None, trainer: Trainer, evaluator: Evaluator, parts: tuple[Any, ...]
    ) -> bool:
        """Every round's selection and training; True when interrupted."""
        cfg, rank = self.cfg, self.rank
        normalize, t_eval, t_train, eval_bs = parts
        bounds = np.cumsum([0] + run.t_split)
        reselects = run.slot.capabilities.reselects
        losses: list[float] = []
        with _sigint_after_step(self.console) as stop, make_progress(self.console) as progress:
            bars: dict[str, Any] = {}

            def train_bar() -> Any:  # created after the first selection, so the bars read in order
                if "train" not in bars:
                    bars["train"] = progress.add_task(
                        "training", total=cfg.batch_budget, completed=trainer.step, info=""
                    )
                return bars["train"]

            def after_step(step: int, loss: float) -> None:
                losses.append(loss)
                progress.update(train_bar(), completed=step)
                if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.batch_budget:
                    metrics = evaluator(step, losses)
                    losses.clear()
                    run.files.event("eval", **metrics)
                    progress.update(train_bar(), info=f"top1 {metrics['top1']:.2f}")
                    run.hook.vecaf_bench_evaluate(run=run.info, step=step, metrics=metrics)
                if rank.any(stop["set"]):  # every rank stops after the same step
                    raise _Stop

            try:
                for r in range(cfg.rounds):
                    if trainer.step >= bounds[r + 1] and len(run.sel_rounds) > r:
                        continue  # round finished before the resume point
                    if len(run.sel_rounds) <= r:
                        self._selection_round(run, r, feats, trainer, progress, (normalize, t_eval, eval_bs))
                        if rank.any(stop["set"]):
                            raise _Stop
                    union = run.sel_rounds[r] if reselects else np.concatenate(run.sel_rounds[: r + 1])
                    train_bar()
                    trainer.train_round(
                        r, union, run.t_split[r], int(bounds[r]), run.splits.pool, t_train, normalize, after_step
                    )
            except (_Stop, KeyboardInterrupt):
                return True
        return False

    def _selection_round(
        self, run: _Run, r: int, feats: np.ndarray | None, trainer: Trainer, progress: Any, parts: tuple[Any, ...]
    ) -> None:
        """Round r's picks: made once on rank 0 and sent to every rank; recorded and announced."""
        cfg = self.cfg
        reselects = run.slot.capabilities.reselects
        earlier = np.concatenate(run.sel_rounds) if run.sel_rounds else np.zeros(0, dtype=np.int64)
        count = run.b_split[r]
        if reselects:  # the whole cumulative budget, chosen afresh from the pool
            earlier, count = np.zeros(0, dtype=np.int64), int(sum(run.b_split[: r + 1]))
        slot = run.cold if (run.cold is not None and trainer.step == 0) else run.slot
        picked = None
        if self.rank.main:  # selection once, on rank 0; every rank gets its picks
            assert feats is not None
            normalize, t_eval, eval_bs = parts
            uses = slot.capabilities.uses
            labels = np.asarray(run.splits.pool.labels)
            if "text" in uses and run.text is None:
                run.text = text_features(cfg, self.host, run.splits, labels, run.ood, run.device, self.console)
            task = progress.add_task(f"selection r{r}", total=count, info=slot.name)
            ctx = build_context(
                selector=slot.name,
                capabilities=slot.capabilities,
                features=feats,
                selected=earlier,
                seed=cfg.seed,
                round=r,
                rounds=cfg.rounds,
                num_classes=run.splits.num_classes,
                device=run.device,
                trained_steps=trainer.step,
                labels=labels if "labels" in uses else None,
                text=run.text,
                outputs=outputs_provider(
                    trainer.model, run.backbone, run.splits.pool, t_eval, normalize, eval_bs,
                    cfg.train.num_workers, cfg.seed, r,
                ) if "model" in uses else None,
                model=trainer.model,
                report=lambda done, total: progress.update(task, completed=done, total=total),
            )
            result = run_selection(slot, ctx, count)
            progress.update(task, completed=next(t.total for t in progress.tasks if t.id == task))
            picked = (result.indices, result.seconds, result.forward_batches, result.stats)
        indices, seconds, batches, stats = self.rank.broadcast(picked)
        run.sel_rounds.append(indices)
        record = RoundRecord(
            round=r,
            picked=len(indices),
            selected_total=len(indices) if reselects else int(sum(map(len, run.sel_rounds))),
            steps=run.t_split[r],
            selection_seconds=seconds,
            selection_forward_batches=batches,
            selector=slot.name,
            stats=stats or {},
        )
        run.records.append(record.to_dict())
        run.files.write_selected(run.info.pool_size, reselects, [s.tolist() for s in run.sel_rounds])
        run.files.event("round", **record.to_dict())
        run.hook.vecaf_bench_round_end(run=run.info, record=record)

    # -- results --------------------------------------------------------------------------------
    def _finish(
        self, run: _Run, trainer: Trainer, evaluator: Evaluator, feature_info: dict[str, Any], interrupted: bool
    ) -> dict[str, Any]:
        caps = run.slot.capabilities
        summary = build_summary(
            self.cfg, run.info, run.backbone, run.splits, run.device, run.records, evaluator.curve, trainer.step,
            feature_info, run.wall_start, self.rank.world, self.host.versions(),
            {
                "whole_pool": caps.whole_pool,
                "reselects": caps.reselects,
                "randomized": caps.randomized,
                "cold_start": run.cold.name if run.cold else None,
            },
        )
        summary.update(evaluator.ood_summary())
        if interrupted:
            run.files.save_checkpoint(
                {
                    **trainer.state_dict(),
                    "selected": [r.tolist() for r in run.sel_rounds],
                    "records": run.records,
                    "curve": evaluator.curve,
                    "ood_curves": evaluator.ood_curves,
                    "rng": rng_state(),
                }
            )
            summary["status"] = "interrupted"
        run.files.event("end", status=summary["status"], steps=summary["steps"], test_top1=summary.get("test_top1"))
        run.files.write_summary(summary)
        run.hook.vecaf_bench_run_end(run=run.info, summary=summary)
        if interrupted:
            raise RunInterrupted(run.info.run_dir, trainer.step, self.cfg.batch_budget)
        run.files.drop_checkpoint()
        return summary
