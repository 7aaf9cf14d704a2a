"""One run, in stages: setup -> features -> rounds of (selection, training, evaluation) -> results.

The runner owns the budgets. A selector only sees the read-only context of its round; it never
trains and never sees the test split. Each stage is its own module (`features`,
`selection_round`, `training`, `evaluation`, `summary`); this one only sequences them and owns
the run's state for checkpoints. Ctrl-C stops after the current optimizer step, saves a
checkpoint beside the results, and `vecaf-bench run --resume RUN_DIR` continues.
"""

from __future__ import annotations

import shutil
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
from ..budget import check_rounds, resolve_label_budget, split_evenly
from ..config import RunConfig, build_config, config_from_dict, dump_yaml, load_yaml
from ..data import DatasetSplits, with_validation
from ..device import resolve_device
from ..errors import PluginError, RunInterrupted, UserError
from ..identity import describe, differences, flat, identity_fields, identity_hash
from ..pluginmanager import PluginHost
from ..progress import make_progress
from ..results import CHECKPOINT, CONFIG, RunFiles, read_summary
from ..seeding import rng_state, seed_everything
from ..shifts import OODSplit, ShiftRequest, parse_shift
from ..transforms import Normalize, data_config_for, eval_transform, train_transform
from .annotations import text_features
from .evaluation import Evaluator
from .features import pool_features
from .given import NAME as GIVEN
from .given import GivenSelection, label_text, resolve_selection
from .outputs import outputs_provider
from .rank import NoHooks, Rank
from .recipes import Trainer, make_trainer
from .selection_round import SelectorSlot, build_context, make_selector, run_selection
from .setup import check_batch_norm, load_dataset, make_run_dir, parse_backbone
from .summary import build_summary


class _Stop(Exception):
    pass


#: Signals that stop a run after the current step with a checkpoint: Ctrl-C, the scheduler's
#: SIGTERM before preemption (SLURM, Kubernetes), and SIGUSR2, which submitit sends before a timeout.
STOP_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGUSR2") if hasattr(signal, n))


@contextmanager
def _stop_after_step(console: Console) -> Iterator[dict[str, Any]]:
    """First signal: finish the current step, save a checkpoint, stop cleanly. A second Ctrl-C
    stops at once (the last periodic checkpoint stays)."""
    flag: dict[str, Any] = {"set": False, "signal": None}
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if flag["set"]:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        flag["set"], flag["signal"] = True, name
        what = "Ctrl-C" if signum == signal.SIGINT else name
        again = " (press again to stop at once)" if signum == signal.SIGINT else ""
        console.print(f"[yellow]{what}: stopping after the current step and saving a checkpoint{again}…")

    try:
        for s in STOP_SIGNALS:
            signal.signal(s, handler)
    except ValueError:  # not the main thread: leave the signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


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
    trainer: Trainer | None = None
    evaluator: Evaluator | None = None
    losses: list[float] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, cfg: RunConfig, console: Console | None = None, host: PluginHost | None = None) -> None:
        self.cfg = cfg
        self.console = console or Console(stderr=True, emoji=False)
        self.host = host or PluginHost(cfg.plugins)
        self.rank = Rank()

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        console: Console | None = None,
        flags: dict[str, Any] | None = None,
        sets: list[str] | None = None,
    ) -> dict[str, Any]:
        """Continues the run in RUN_DIR from its checkpoint, under the config it started with.

        FLAGS (None: not given) and SETS given with --resume may change only what does not decide
        what the run computes (the device, the data or cache folder, trackers): those are applied
        and said; any other change is refused, as is a config.yaml that no longer matches the
        checkpoint's record of the run's identity."""
        console = console or Console(stderr=True, emoji=False)
        files = RunFiles(run_dir)
        if not files.path(CONFIG).is_file():
            raise UserError(
                f"--resume '{files.dir}' is not a run folder (no {CONFIG} in it). Give the folder of one run, "
                "as printed when it was interrupted (<out>/<run-id>)."
            )
        if not files.has_checkpoint():
            summary = read_summary(files.dir)
            if summary is not None and summary.get("status") == "finished":
                raise UserError(f"run '{files.dir}' has already finished; nothing to resume.")
            raise UserError(
                f"run '{files.dir}' has no {CHECKPOINT} to resume from; start it again with "
                f"vecaf-bench run --config {files.path(CONFIG)}."
            )
        source = f"in {files.path(CONFIG)}"
        recorded = config_from_dict(load_yaml(files.path(CONFIG)), source)
        cfg = _apply_resume_flags(recorded, files.path(CONFIG), flags, sets, console)
        # the run stays in its folder, wherever it was moved to
        cfg = cfg.replace(out=str(files.dir.parent), run_name=files.dir.name)
        ckpt = files.load_checkpoint(console)
        _check_identity(ckpt, cfg, files)
        return cls(cfg, console).run(run_dir=files.dir, ckpt=ckpt)

    # -- stage 0: setup -------------------------------------------------------------------------
    def run(self, run_dir: Path | None = None, ckpt: dict[str, Any] | None = None) -> dict[str, Any]:
        cfg = self.cfg
        wall_start = time.perf_counter()
        if cfg.selection:
            slot, cold = self._given_slot(), None
        else:
            slot = make_selector(self.host, cfg.selector, cfg.selector_options)
            cold = self._cold_start(slot)
        device = self.rank.start(resolve_device(cfg.device), cfg.batch_size)
        if not self.rank.main:
            self.console = Console(quiet=True)  # rank 0 alone prints, writes and logs
        try:
            return self._start(slot, cold, device, run_dir, ckpt, wall_start)
        finally:
            self.rank.stop()

    def _given_slot(self) -> SelectorSlot:
        """The stand-in slot of `run --selection`; its picks are resolved once the dataset is loaded."""
        cfg = self.cfg
        if cfg.selector not in ("random", GIVEN):
            raise UserError(f"--selection {cfg.selection} replaces the selector; drop --selector {cfg.selector} "
                            "(or the selection to run the selector).")
        if cfg.rounds != 1:
            raise UserError(f"--selection {cfg.selection} is one fixed set of picks; it runs with --rounds 1, not "
                            f"{cfg.rounds}.")
        placeholder = GivenSelection(np.zeros(0, dtype=np.int64))
        return SelectorSlot(GIVEN, placeholder, placeholder.capabilities, "vecaf-bench")

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
        self,
        slot: SelectorSlot,
        cold: SelectorSlot | None,
        device: torch.device,
        run_dir: Path | None,
        ckpt: dict[str, Any] | None,
        wall: float,
    ) -> dict[str, Any]:
        cfg, host, rank = self.cfg, self.host, self.rank
        bb_prefix, bb_name = parse_backbone(cfg.backbone)
        backbone = host.backbones().get(bb_prefix).factory(bb_name, weights=cfg.weights)
        tracker_factories = [host.trackers().get(t) for t in cfg.trackers]
        shift_factories = [(s, host.shifts().get(parse_shift(s)[0]).factory) for s in cfg.shifts]
        with rank.main_first():  # rank 0 fills the file index and the shift cache, the others read them
            if cfg.selection:
                splits, given = resolve_selection(cfg.selection, load_dataset(host, cfg), cfg.val_fraction)
                slot = SelectorSlot(GIVEN, given, given.capabilities, "vecaf-bench")
                if cfg.selector != GIVEN or cfg.label is None:  # the board names the row after the file
                    cfg = self.cfg = cfg.replace(selector=GIVEN, label=cfg.label or label_text(given.origin))
            else:
                splits = with_validation(load_dataset(host, cfg), cfg.val_fraction)
            # OOD splits before the run folder: a bad --shift leaves nothing behind
            input_size = data_config_for(backbone.data_config, cfg.image_size or splits.default_image_size)
            ood = self._ood_splits(splits, shift_factories, int(input_size["input_size"][-1]))
        pool_size = len(splits.pool)
        if rank.world > pool_size:
            raise UserError(f"torchrun started {rank.world} processes for a pool of {pool_size} images; use fewer.")
        whole = slot.capabilities.whole_pool
        label_budget = pool_size if whole else resolve_label_budget(cfg.label_budget, pool_size)
        if isinstance(slot.selector, GivenSelection):
            _check_given_size(slot.selector, label_budget, cfg, self.console)
        model = self._model(backbone, splits, device)  # before the run folder: a bad batch size leaves nothing
        check_rounds(label_budget, cfg.batch_budget, cfg.rounds, whole)
        created = run_dir is None
        if run_dir is None:
            if rank.main:
                run_dir = make_run_dir(cfg)
                RunFiles(run_dir).write_config(dump_yaml(cfg))
            run_dir = Path(rank.broadcast(str(run_dir)))
        elif ckpt is not None and ckpt.get("device") not in (None, str(device)):
            self.console.print(
                f"[yellow]resuming on {device}; the run trained on {ckpt['device']} so far. Floats differ between "
                "devices: the summary records both.", highlight=False,
            )
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
            val_size=len(splits.val) if splits.val is not None else 0,
        )
        trackers: list[tuple[str, Any]] = []
        try:
            trackers = [(e.name, e.factory(cfg, run_dir)) for e in tracker_factories] if rank.main else []
            run = _Run(
                info, RunFiles(run_dir, writer=rank.main), slot, cold, backbone, splits, ood, device,
                host.hook if rank.main else NoHooks(), ckpt, wall, model,
            )
            for name, t in trackers:
                host.register_observer(t, name)
            return self._execute(run)
        except RunInterrupted:
            raise
        except BaseException as e:
            if rank.main:
                self._failed(RunFiles(run_dir), created, e)
            raise
        finally:
            for _, t in trackers:
                if host.pm.is_registered(t):
                    host.pm.unregister(t)

    def _failed(self, files: RunFiles, created: bool, e: BaseException) -> None:
        """A run that fails leaves no half-made folder: without a checkpoint (nothing computed that
        a resume could use) a folder this call made is removed; otherwise its summary says
        "failed", with the error, and --resume continues from the checkpoint."""
        if created and not files.has_checkpoint():
            shutil.rmtree(files.dir, ignore_errors=True)
            if not isinstance(e, KeyboardInterrupt):
                self.console.print(f"[dim]removed the unfinished run folder {files.dir}", highlight=False)
            return
        if isinstance(e, KeyboardInterrupt):
            return
        error = str(e) if isinstance(e, UserError) else f"{type(e).__name__}: {e}"
        files.event("end", status="failed", error=error)
        previous = files.summary() or {}
        files.write_summary({
            **{k: previous[k] for k in ("run_id", "config", "identity", "identity_hash") if k in previous},
            "run_id": files.dir.name,
            "status": "failed",
            "error": error,
            "resumable": files.has_checkpoint(),
        })

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
        normalize = Normalize(dcfg, run.device, channels_last=cfg.train.channels_last)
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
        if isinstance(run.slot.selector, GivenSelection):
            run.b_split = [len(run.slot.selector.positions)]
        trainer = make_trainer(self.host, cfg, model, run.backbone, run.device, self.rank, feats)
        ood_every = cfg.eval_every if cfg.ood_eval_every is None else cfg.ood_eval_every
        evaluator = Evaluator(
            model, splits.test, run.ood, t_eval, normalize, eval_bs, cfg.train.num_workers, ood_every, cfg.batch_budget,
            val=splits.val,
            features_of=None if self.rank.active else lambda source: pool_features(
                backbone=run.backbone, model=model, pool=source, transform=t_eval, normalize=normalize,
                input_size=dcfg["input_size"], batch_size=eval_bs, num_workers=cfg.train.num_workers,
                cache_dir=cfg.cache_dir, rank=self.rank, console=self.console,
            )[0],
            head_of=getattr(trainer, "feature_head", None),
            test_curve=cfg.test_curve,
        )
        run.trainer, run.evaluator = trainer, evaluator
        if run.ckpt is not None:
            trainer.restore(run.ckpt)
            run.sel_rounds = [np.asarray(r, dtype=np.int64) for r in run.ckpt["selected"]]
            run.records = list(run.ckpt["records"])
            run.losses = list(run.ckpt.get("losses", []))
            run.devices = list(run.ckpt.get("devices", []))
            evaluator.restore(run.ckpt["curve"], run.ckpt.get("ood_curves", {}), run.ckpt.get("best_weights"))
            self.console.print(
                f"resuming {run.info.run_id} at step {trainer.step}/{cfg.batch_budget} "
                f"({len(run.sel_rounds)} of {cfg.rounds} selection round(s) done)"
            )
        if run.info.device not in run.devices:
            run.devices.append(run.info.device)
        outputs = (normalize, t_eval, t_train, eval_bs)
        stopped_by = self._rounds(run, feats, trainer, evaluator, outputs)
        return self._finish(run, trainer, evaluator, feature_info, stopped_by)

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
        layout = torch.channels_last if cfg.train.channels_last else torch.preserve_format  # NHWC: fast convolutions
        return model.to(device, memory_format=layout)

    def _rounds(
        self, run: _Run, feats: np.ndarray | None, trainer: Trainer, evaluator: Evaluator, parts: tuple[Any, ...]
    ) -> str | None:
        """Every round's selection and training; the name of the signal that stopped it, or None.

        A checkpoint is saved after each selection round (selection can cost more than training)
        and every `checkpoint_every` steps, so a killed run (kill -9, out of memory) loses at most
        that much; a signal saves one after the current step."""
        cfg, rank = self.cfg, self.rank
        normalize, t_eval, t_train, eval_bs = parts
        bounds = np.cumsum([0] + run.t_split)
        reselects = run.slot.capabilities.reselects
        losses = run.losses
        with _stop_after_step(self.console) as stop, make_progress(self.console) as progress:
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
                    shown = ("top1", "test") if "top1" in metrics else ("val_top1", "val")
                    progress.update(train_bar(), info=f"{shown[1]} top1 {metrics[shown[0]]:.2f}")
                    run.hook.vecaf_bench_evaluate(run=run.info, step=step, metrics=metrics)
                if rank.any(stop["set"]):  # every rank stops after the same step
                    raise _Stop
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.batch_budget:
                    self._checkpoint(run)

            try:
                for r in range(cfg.rounds):
                    if trainer.step >= bounds[r + 1] and len(run.sel_rounds) > r:
                        continue  # round finished before the resume point
                    if len(run.sel_rounds) <= r:
                        self._selection_round(run, r, feats, trainer, progress, (normalize, t_eval, eval_bs))
                        if rank.any(stop["set"]):
                            raise _Stop
                        self._checkpoint(run)
                    union = run.sel_rounds[r] if reselects else np.concatenate(run.sel_rounds[: r + 1])
                    train_bar()
                    trainer.train_round(
                        r, union, run.t_split[r], int(bounds[r]), run.splits.pool, t_train, normalize, after_step
                    )
            except (_Stop, KeyboardInterrupt):
                return stop["signal"] or "SIGINT"
        return None

    def _checkpoint(self, run: _Run) -> None:
        """Everything a resume needs to go on exactly as if never stopped (rank 0 writes)."""
        assert run.trainer is not None and run.evaluator is not None
        run.files.save_checkpoint(
            {
                **run.trainer.state_dict(),
                "selected": [r.tolist() for r in run.sel_rounds],
                "records": run.records,
                **run.evaluator.state_dict(),
                "losses": list(run.losses),
                "rng": rng_state(),
                "identity": identity_fields(self.cfg.to_dict()),
                "device": run.info.device,
                "devices": run.devices,
            }
        )

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
                    features=feats, head_of=getattr(trainer, "feature_head", None),
                ) if "model" in uses else None,
                model=trainer.model,
                report=lambda done, total: progress.update(task, completed=done, total=total),
            )
            result = run_selection(slot, ctx, count)
            progress.update(task, completed=next(t.total for t in progress.tasks if t.id == task))
            picked = (result.indices, result.seconds, result.forward_batches, result.stats, result.forward_images)
        indices, seconds, batches, stats, images = self.rank.broadcast(picked)
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
            selection_forward_images=images,
        )
        run.records.append(record.to_dict())
        run.files.write_selected(run.info.pool_size, reselects, [s.tolist() for s in run.sel_rounds])
        run.files.event("round", **record.to_dict())
        run.hook.vecaf_bench_round_end(run=run.info, record=record)

    # -- results --------------------------------------------------------------------------------
    def _finish(
        self, run: _Run, trainer: Trainer, evaluator: Evaluator, feature_info: dict[str, Any], stopped_by: str | None
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
        summary.update(self._judged(run, trainer, evaluator, feature_info))
        if isinstance(run.slot.selector, GivenSelection):
            summary["selection"] = run.slot.selector.origin
        fields = identity_fields(self.cfg.to_dict())
        summary.update(identity_hash=identity_hash(fields), identity=fields, devices=run.devices)
        if stopped_by is not None:
            self._checkpoint(run)
            summary["status"] = "interrupted"
            summary["stopped_by"] = stopped_by
        run.files.event("end", status=summary["status"], steps=summary["steps"], test_top1=summary.get("test_top1"))
        run.files.write_summary(summary)
        run.hook.vecaf_bench_run_end(run=run.info, summary=summary)
        if stopped_by is not None:
            raise RunInterrupted(run.info.run_dir, trainer.step, self.cfg.batch_budget, stopped_by)
        run.files.drop_checkpoint()
        return summary


    def _judged(
        self, run: _Run, trainer: Trainer, evaluator: Evaluator, feature_info: dict[str, Any]
    ) -> dict[str, Any]:
        """What the board judges a run by: its validation split, the best-on-validation point, the
        method's label, and the compute it spent as images processed (training passes, selection
        forwards, feature extraction, evaluation)."""
        cfg, curve = self.cfg, evaluator.curve
        last = curve[-1] if curve else {}
        per_image = getattr(trainer, "train_images", None)
        return {
            "label": cfg.label,
            "val": run.splits.info.get("val"),
            "val_size": run.info.val_size,
            "val_top1": last.get("val_top1"),
            "best": evaluator.best(),
            "compute": {
                "train_images": int(per_image if per_image is not None else trainer.step * cfg.batch_size),
                "selection_images": int(sum(r.get("selection_forward_images", 0) for r in run.records)),
                "feature_images": 0 if feature_info.get("cached") else int(feature_info.get("images", 0)),
                "feature_cached": bool(feature_info.get("cached")),
                "eval_images": evaluator.images_evaluated(),
            },
        }


def _check_given_size(given: GivenSelection, label_budget: int, cfg: RunConfig, console: Console) -> None:
    """A selection larger than the label budget would compare unequal budgets: refused. A smaller one
    trains on what it holds, and says so."""
    n = len(given.positions)
    if n > label_budget:
        raise UserError(
            f"--selection {cfg.selection} holds {n:,} images, more than the label budget of {label_budget:,} "
            f"({cfg.label_budget}). Pass --label-budget {n} (the runs it is compared with need the same budget), or "
            "a smaller selection."
        )
    if n < label_budget:
        console.print(f"[yellow]--selection holds {n:,} images, fewer than the label budget of {label_budget:,}: the "
                      "run trains on those alone.", highlight=False)


def _apply_resume_flags(
    recorded: RunConfig, config_path: Path, flags: dict[str, Any] | None, sets: list[str] | None, console: Console
) -> RunConfig:
    """The run's config with the flags given alongside --resume: those outside the run's identity
    applied and said, any that would change what the run computes refused, each named."""
    given = {k: v for k, v in (flags or {}).items() if v is not None}
    if not given and not sets:
        return recorded
    wanted = build_config(config_path, given, list(sets or []))
    if "out" in given or wanted.run_name != recorded.run_name:
        raise UserError(
            "--out and run_name cannot be given with --resume: a resumed run stays in its folder. Move the folder "
            "itself if it should live elsewhere, then resume it from there."
        )
    changed = differences(identity_fields(recorded.to_dict()), identity_fields(wanted.to_dict()))
    if changed:
        raise UserError(
            f"--resume continues a run under the config it started with; the flags given with it would change "
            f"what it computes ({describe(changed)}). Drop those flags to resume, or start a new run with them: "
            f"vecaf-bench run --config {config_path} plus the flags."
        )
    for k, a, b in differences(flat(recorded.to_dict()), flat(wanted.to_dict())):
        console.print(f"resume: {k} = {b!r} (the run had {a!r}); it does not change what the run computes.",
                      highlight=False)
    return wanted


def _check_identity(ckpt: dict[str, Any], cfg: RunConfig, files: RunFiles) -> None:
    """config.yaml must still describe the run its checkpoint holds (an edited seed or budget,
    another run's config copied in): else the resumed run would record numbers it never computed."""
    recorded = ckpt.get("identity")
    if recorded is None:  # a checkpoint of vecaf-bench 0.2.0, before identities were stored
        return
    changed = differences(recorded, identity_fields(cfg.to_dict()))
    if changed:
        raise UserError(
            f"{files.path(CONFIG)} no longer matches the run its checkpoint holds ({describe(changed)}). "
            f"Put the values the run started with back into {CONFIG} to resume it, or start a new run with "
            f"vecaf-bench run --config {files.path(CONFIG)}."
        )
