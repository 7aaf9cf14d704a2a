"""One run: dataset -> features (cached) -> rounds of (select, finetune, evaluate) -> results.

The runner owns the budgets. A selector only sees a `SelectionContext` built from the pool; it
never trains and never sees the test split. Ctrl-C stops after the current optimizer step,
saves a checkpoint beside the results, and `vecaf-bench run --resume RUN_DIR` continues.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from . import __version__, sync_batchnorm
from . import distributed as dist
from .budget import resolve_label_budget, split_evenly
from .config import RunConfig, config_from_dict, default_cache_dir, dump_yaml
from .data import DatasetRequest, DatasetSplits
from .device import resolve_device
from .environment import device_name, git_commit, package_versions
from .errors import PluginError, UserError
from .features import FeatureCache, cache_key, extract
from .pluginmanager import PluginHost
from .progress import make_progress
from .results import read_json, write_json_atomic, write_text_atomic
from .seeding import rng_state, seed_everything, set_rng_state
from .selection import KNOWN_USES, SelectionContext, run_selector
from .shifts import OODSplit, ShiftRequest, parse_shift
from .train import (
    StepState,
    batch_plan,
    build_criterion,
    build_optimizer,
    evaluate,
    per_sample_losses,
    train_steps,
)
from .transforms import Normalize, data_config_for, eval_transform, train_transform

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunInfo:
    """What life-cycle hooks receive about the run."""

    config: RunConfig
    run_id: str
    run_dir: Path
    pool_size: int = 0
    test_size: int = 0
    num_classes: int = 0
    label_budget: int = 0
    device: str = "cpu"
    uses: list[str] = field(default_factory=list)
    resumed: bool = False


class RunInterrupted(Exception):
    def __init__(self, run_dir: Path, step: int, total: int) -> None:
        super().__init__(f"interrupted at step {step}/{total}")
        self.run_dir, self.step, self.total = run_dir, step, total


class _Stop(Exception):
    pass


@contextmanager
def _sigint_after_step(console: Console):
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


def parse_backbone(spec: str) -> tuple[str, str]:
    """'timm:resnet50' -> ('timm', 'resnet50'); a bare model name means the timm family."""
    prefix, sep, name = spec.partition(":")
    if not sep:
        return "timm", spec
    return prefix, name


def make_selector(host: PluginHost, name: str, options: dict[str, Any]) -> Any:
    entry = host.selectors().get(name)
    try:
        sig = inspect.signature(entry.factory)
        sig.bind(**options)
    except TypeError:
        accepted = [p for p in inspect.signature(entry.factory).parameters if p not in ("self", "kwargs")]
        bad = [k for k in options if k not in accepted]
        raise UserError(
            f"selector '{name}' does not take option(s) {', '.join(map(repr, bad)) or repr(options)}; "
            f"it accepts: {', '.join(accepted) or 'no options'}."
        ) from None
    try:
        selector = entry.factory(**options)
    except TypeError as e:
        raise UserError(f"selector '{name}' does not take these options {options}: {e}.") from None
    uses = frozenset(getattr(selector, "uses", frozenset()))
    if not uses <= KNOWN_USES:
        raise PluginError(
            f"selector '{name}' ({entry.source}) declares unknown uses {sorted(uses - KNOWN_USES)}; "
            f"known: {sorted(KNOWN_USES)}."
        )
    return selector


def load_dataset(host: PluginHost, cfg: RunConfig) -> DatasetSplits:
    request = DatasetRequest(
        name=cfg.dataset,
        seed=cfg.seed,
        data_root=cfg.data_root,
        test_fraction=cfg.test_fraction,
        on_corrupt=cfg.on_corrupt,
        cache_dir=cfg.cache_dir,
    )
    if cfg.dataset in host.datasets():
        factory = host.datasets().get(cfg.dataset).factory
    else:
        factory = host.hook.vecaf_bench_resolve_dataset(name=cfg.dataset)
        if factory is None:
            host.datasets().get(
                cfg.dataset, hint="Or give the path of a folder in the ImageNet layout (one sub-folder per class)."
            )
    splits = factory(request)
    if len(splits.pool) == 0 or len(splits.test) == 0:
        raise UserError(f"dataset '{cfg.dataset}' has an empty pool or test split; it needs images in both.")
    return splits


def _run_id(cfg: RunConfig) -> str:
    if cfg.run_name:
        return re.sub(r"[^A-Za-z0-9._-]+", "-", cfg.run_name).strip("-")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    data = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(cfg.dataset).name or "data").strip("-")
    return f"{stamp}-{cfg.selector}-{data}-s{cfg.seed}"


def _make_run_dir(cfg: RunConfig) -> Path:
    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise UserError(
            f"results folder --out '{out}' is not writable ({e.strerror or e}). "
            "Choose a folder you can write to with --out."
        ) from None
    run_id = _run_id(cfg)
    run_dir = out / run_id
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = out / f"{run_id}-{k}"
    run_dir.mkdir()
    return run_dir


class Runner:
    def __init__(self, cfg: RunConfig, console: Console | None = None, host: PluginHost | None = None) -> None:
        self.cfg = cfg
        self.console = console or Console(stderr=True, emoji=False)
        self.host = host or PluginHost(cfg.plugins)

    @classmethod
    def resume(cls, run_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
        run_dir = Path(run_dir)
        cfg_path = run_dir / "config.yaml"
        if not cfg_path.is_file():
            raise UserError(f"--resume '{run_dir}' is not a run folder (no config.yaml in it).")
        if not (run_dir / CHECKPOINT).is_file():
            summary = run_dir / "summary.json"
            if summary.is_file() and read_json(summary).get("status") == "finished":
                raise UserError(f"run '{run_dir}' has already finished; nothing to resume.")
            raise UserError(f"run '{run_dir}' has no {CHECKPOINT} to resume from; start it again with vecaf-bench run.")
        from .config import load_yaml

        cfg = config_from_dict(load_yaml(cfg_path), f"in {cfg_path}")
        return cls(cfg, console).run(run_dir=run_dir)

    # ------------------------------------------------------------------------------------------
    def run(self, run_dir: Path | None = None) -> dict[str, Any]:
        cfg, host = self.cfg, self.host
        wall_start = time.perf_counter()
        selector = make_selector(host, cfg.selector, cfg.selector_options)
        uses = frozenset(getattr(selector, "uses", frozenset()))
        device = resolve_device(cfg.device)
        if dist.requested():
            dist.check_batch_size(cfg.batch_size, int(os.environ["WORLD_SIZE"]))
            device = dist.init(device)
            if not dist.is_main():
                self.console = Console(quiet=True)  # rank 0 alone prints, writes and logs
        try:
            return self._start(selector, uses, device, run_dir, wall_start)
        finally:
            dist.shutdown()

    def _start(
        self, selector: Any, uses: frozenset[str], device: torch.device, run_dir: Path | None, wall_start: float
    ) -> dict[str, Any]:
        cfg, host = self.cfg, self.host
        bb_prefix, bb_name = parse_backbone(cfg.backbone)
        backbone = host.backbones().get(bb_prefix).factory(bb_name, weights=cfg.weights)
        tracker_factories = [host.trackers().get(t) for t in cfg.trackers]
        shift_factories = [(s, host.shifts().get(parse_shift(s)[0]).factory) for s in cfg.shifts]
        with dist.main_first():  # rank 0 fills the file index and the shift cache, the others read them
            splits = load_dataset(host, cfg)
            # OOD splits before the run folder: a bad --shift leaves nothing behind
            input_size = data_config_for(backbone.data_config, cfg.image_size or splits.default_image_size)
            ood = self._ood_splits(splits, shift_factories, int(input_size["input_size"][-1]))
        pool_size = len(splits.pool)
        if dist.world() > pool_size:
            raise UserError(f"torchrun started {dist.world()} processes for a pool of {pool_size} images; use fewer.")
        if getattr(selector, "takes_whole_pool", False):
            label_budget = pool_size
        else:
            label_budget = resolve_label_budget(cfg.label_budget, pool_size)

        resumed = run_dir is not None
        ckpt: dict[str, Any] | None = None
        if resumed:
            assert run_dir is not None
            ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
        else:
            if dist.is_main():
                run_dir = _make_run_dir(cfg)
                write_text_atomic(run_dir / "config.yaml", dump_yaml(cfg))
            run_dir = Path(dist.broadcast(str(run_dir)))
        assert run_dir is not None

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
            resumed=resumed,
        )
        trackers = [e.factory(cfg, run_dir) for e in tracker_factories] if dist.is_main() else []
        for t in trackers:
            host.pm.register(t)
        try:
            return self._run(info, selector, backbone, splits, ood, device, ckpt, wall_start)
        finally:
            for t in trackers:
                host.pm.unregister(t)

    def _run(
        self,
        info: RunInfo,
        selector: Any,
        backbone: Any,
        splits: DatasetSplits,
        ood: list[OODSplit],
        device: torch.device,
        ckpt: dict[str, Any] | None,
        wall_start: float,
    ) -> dict[str, Any]:
        cfg, console = self.cfg, self.console
        # life-cycle observers (trackers, third-party plugins) see one run: rank 0's
        hook: Any = self.host.hook if dist.is_main() else _NoHooks()
        run_dir = info.run_dir
        image_size = cfg.image_size or splits.default_image_size
        dcfg = data_config_for(backbone.data_config, image_size)
        ood_masks = {
            o.name: (torch.as_tensor(o.mask, dtype=torch.bool, device=device) if o.mask is not None else None)
            for o in ood
        }
        ood_curves: dict[str, list[dict[str, Any]]] = {o.name: [] for o in ood}
        ood_every = cfg.eval_every if cfg.ood_eval_every is None else cfg.ood_eval_every
        normalize = Normalize(dcfg, device)
        t_eval = eval_transform(dcfg)
        t_train = train_transform(dcfg, cfg.train.augment, splits.augment)
        eval_bs = max(cfg.batch_size, 64)

        seed_everything(cfg.seed)
        model = backbone.create_model(splits.num_classes, drop_path=cfg.train.drop_path)
        if dist.active():  # batch statistics of the global batch, on GPUs and on the CPU
            model, per_rank_bn = sync_batchnorm.convert(model, device.type)
            if per_rank_bn:
                console.print(
                    f"[yellow]torchrun: {len(per_rank_bn)} BatchNorm layer(s) of a kind that cannot be synchronised "
                    f"({per_rank_bn[0]}, …) normalise each process's slice of the batch."
                )
        model = model.to(device)
        hook.vecaf_bench_run_start(run=info)

        # -- pool features, cached --------------------------------------------------------------
        cache = FeatureCache(cfg.cache_dir or default_cache_dir())
        key = cache_key(
            backbone=backbone.fingerprint,
            dataset=splits.pool.fingerprint,
            n=len(splits.pool),
            transform=repr(t_eval),
            input_size=dcfg["input_size"],
        )
        t0 = time.perf_counter()
        # rank 0 alone holds the features (the selection is its job); the others help extract them
        feats = cache.load(key) if dist.is_main() else None
        feature_info: dict[str, Any] = {"cache": str(cache.path(key))}
        if dist.broadcast(feats is not None):
            feature_info.update(cached=True, seconds=time.perf_counter() - t0)
            if feats is not None:
                console.print(f"features: reused cache {cache.path(key)} ({feats.shape[0]} x {feats.shape[1]})")
        else:
            n_pool = len(splits.pool)
            shard = dist.shard(n_pool)
            with make_progress(console) as progress:
                task = progress.add_task("features", total=n_pool if shard is None else len(shard), info=str(device))

                def embed(out_factory: Any) -> None:
                    timing = extract(
                        backbone.embed,
                        model,
                        splits.pool,
                        t_eval,
                        normalize,
                        out_factory,
                        batch_size=eval_bs,
                        num_workers=cfg.train.num_workers,
                        on_batch=lambda n: progress.advance(task, n),
                        indices=shard,
                    )
                    feature_info.update(timing, images=n_pool)

                meta = {"backbone": backbone.fingerprint, "dataset": splits.pool.fingerprint, "n": n_pool}
                if shard is None:
                    feats = cache.store(key, meta, embed)
                else:  # each rank embeds its shard; rank 0 puts the rows in pool order into the cache
                    local: dict[str, np.ndarray] = {}
                    embed(lambda dim: local.setdefault("rows", np.empty((len(shard), dim), dtype=np.float32)))
                    rows = local["rows"]
                    if dist.is_main():

                        def gather(open_out: Any) -> None:
                            dist.gather_rows(rows, n_pool, open_out(rows.shape[1]))

                        feats = cache.store(key, meta, gather)
                    else:
                        dist.gather_rows(rows, n_pool, None)
            feature_info.update(cached=False, seconds=time.perf_counter() - t0)
            if feats is not None:
                shape, secs = f"{feats.shape[0]} x {feats.shape[1]}", feature_info["seconds"]
                console.print(f"features: extracted {shape} in {secs:.1f} s, cached")

        # -- state (fresh or from the checkpoint) ---------------------------------------------
        R = cfg.rounds
        t_split = split_evenly(cfg.batch_budget, R)
        if getattr(selector, "takes_whole_pool", False):
            b_split = [info.label_budget] + [0] * (R - 1)
        else:
            b_split = split_evenly(info.label_budget, R)
        bounds = np.cumsum([0] + t_split)
        sel_rounds: list[np.ndarray] = []
        records: list[dict[str, Any]] = []
        curve: list[dict[str, Any]] = []
        state = StepState(global_step=0)
        opt, sched = build_optimizer(model, cfg.train, cfg.batch_budget)
        # what trains: under torchrun the DDP wrapper (gradients averaged over the ranks); evaluation,
        # features and selection use the bare model, whose forward does not wait for the other ranks
        trainee: torch.nn.Module = model
        if dist.active():
            trainee = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        criterion = build_criterion(cfg.train)
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            state.global_step = int(ckpt["global_step"])
            sched.step_update(num_updates=state.global_step)
            sel_rounds = [np.asarray(r, dtype=np.int64) for r in ckpt["selected"]]
            records, curve = list(ckpt["records"]), list(ckpt["curve"])
            ood_curves.update({k: list(v) for k, v in ckpt.get("ood_curves", {}).items() if k in ood_curves})
            set_rng_state(ckpt["rng"])
            console.print(f"resuming {run_dir.name} at step {state.global_step}/{cfg.batch_budget}")

        def save_checkpoint() -> None:
            if not dist.is_main():
                return
            tmp = run_dir / f".{CHECKPOINT}.tmp"
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "global_step": state.global_step,
                    "selected": [r.tolist() for r in sel_rounds],
                    "records": records,
                    "curve": curve,
                    "ood_curves": ood_curves,
                    "rng": rng_state(),
                },
                tmp,
            )
            os.replace(tmp, run_dir / CHECKPOINT)

        def write_selected() -> None:
            if not dist.is_main():
                return
            write_json_atomic(
                run_dir / "selected.json",
                {
                    "pool_size": info.pool_size,
                    "mode": "reselect" if reselects else "grow",  # reselect: each round holds the whole set
                    "rounds": [r.tolist() for r in sel_rounds],
                },
            )

        labels = np.asarray(splits.pool.labels)
        uses = selector_uses(selector)
        reselects = bool(getattr(selector, "reselects", False))
        text_cache: Any = None  # text features are computed once per run, on first use

        def _loss_fn(ctx: SelectionContext) -> Any:
            def loss_fn(indices: np.ndarray | None = None) -> np.ndarray:
                idx = np.arange(info.pool_size) if indices is None else np.asarray(indices, dtype=np.int64)
                losses, batches = per_sample_losses(
                    model, splits.pool, idx, t_eval, normalize, eval_bs, cfg.train.num_workers
                )
                ctx.forward_batches += batches
                return losses

            return loss_fn

        interrupted = False
        losses: list[float] = []
        with _sigint_after_step(console) as stop, make_progress(console) as progress:
            bars: dict[str, Any] = {}

            def train_bar() -> Any:  # created after the first selection, so the bars read in order
                if "train" not in bars:
                    bars["train"] = progress.add_task(
                        "training", total=cfg.batch_budget, completed=state.global_step, info=""
                    )
                return bars["train"]

            def do_eval(step: int) -> None:
                m = evaluate(model, splits.test, t_eval, normalize, eval_bs, cfg.train.num_workers)
                point = {"step": step, "top1": m["top1"], "top5": m["top5"], "loss": m["loss"]}
                if losses:
                    point["train_loss"] = float(np.mean(losses))
                    losses.clear()
                curve.append(point)
                metrics: dict[str, Any] = dict(point)
                if ood and ((ood_every and step % ood_every == 0) or step == cfg.batch_budget):
                    for o in ood:
                        mo = evaluate(
                            model, o.images, t_eval, normalize, eval_bs, cfg.train.num_workers, ood_masks[o.name]
                        )
                        ood_curves[o.name].append({"step": step, "top1": mo["top1"], "top5": mo["top5"]})
                        metrics[f"ood/{o.name}/top1"] = mo["top1"]
                        metrics[f"ood/{o.name}/top5"] = mo["top5"]
                    for group, names in _ood_groups(ood).items():
                        metrics[f"ood/{group}/mean_top1"] = float(np.mean([ood_curves[n][-1]["top1"] for n in names]))
                progress.update(train_bar(), info=f"top1 {m['top1']:.2f}")
                hook.vecaf_bench_evaluate(run=info, step=step, metrics=metrics)

            def after_step(step: int, loss: float) -> None:
                losses.append(loss)
                progress.update(train_bar(), completed=step)
                if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.batch_budget:
                    do_eval(step)
                if dist.any_rank(stop["set"]):  # every rank stops after the same step
                    raise _Stop

            try:
                for r in range(R):
                    if state.global_step >= bounds[r + 1] and len(sel_rounds) > r:
                        continue  # round finished before the resume point
                    if len(sel_rounds) <= r:
                        earlier = np.concatenate(sel_rounds) if sel_rounds else np.zeros(0, dtype=np.int64)
                        count = b_split[r]
                        if reselects:  # the whole cumulative budget, chosen afresh from the pool
                            earlier, count = np.zeros(0, dtype=np.int64), int(sum(b_split[: r + 1]))
                        picked = None
                        if dist.is_main():  # selection once, on rank 0; every rank gets its picks
                            assert feats is not None
                            ctx = SelectionContext(
                                features=feats,
                                selected=earlier,
                                seed=cfg.seed,
                                device=device,
                                round=r,
                                rounds=R,
                                num_classes=splits.num_classes,
                                labels=labels if "labels" in uses else None,
                                trained_steps=state.global_step,
                            )
                            if "model" in uses:
                                ctx.model = model
                                ctx.per_sample_loss = _loss_fn(ctx)
                            if "text" in uses:
                                if text_cache is None:
                                    text_cache = self._text_features(splits, labels, ood, device)
                                ctx.text = text_cache
                            sel_task = progress.add_task(f"selection r{r}", total=count, info=cfg.selector)

                            def report(done: int, total: int, _t: Any = sel_task) -> None:
                                progress.update(_t, completed=done, total=total)

                            ctx.report = report
                            result = run_selector(cfg.selector, selector, ctx, count)
                            done_total = next(t.total for t in progress.tasks if t.id == sel_task)
                            progress.update(sel_task, completed=done_total)
                            stats = getattr(selector, "round_stats", None)
                            picked = (
                                result.indices,
                                result.seconds,
                                result.forward_batches,
                                dict(stats) if stats else None,
                            )
                        indices, sel_seconds, sel_batches, stats = dist.broadcast(picked)
                        sel_rounds.append(indices)
                        record: dict[str, Any] = {
                            "round": r,
                            "picked": len(indices),
                            "selected_total": len(indices) if reselects else int(sum(map(len, sel_rounds))),
                            "steps": t_split[r],
                            "selection_seconds": sel_seconds,
                            "selection_forward_batches": sel_batches,
                        }
                        if stats:
                            record["stats"] = stats
                        records.append(record)
                        write_selected()
                        hook.vecaf_bench_round_end(run=info, record=record)
                        if dist.any_rank(stop["set"]):
                            raise _Stop
                    union = sel_rounds[r] if reselects else np.concatenate(sel_rounds[: r + 1])
                    train_bar()
                    plan = batch_plan(union, t_split[r], cfg.batch_size, cfg.seed, r)
                    done_in_round = state.global_step - int(bounds[r])
                    train_steps(
                        trainee,
                        splits.pool,
                        plan[done_in_round:],
                        t_train,
                        normalize,
                        opt,
                        sched,
                        criterion,
                        state,
                        cfg.train.amp,
                        cfg.train.num_workers,
                        after_step,
                        augment_seed=cfg.seed if cfg.train.augment else None,
                    )
            except (_Stop, KeyboardInterrupt):
                interrupted = True

        summary = self._summary(info, backbone, splits, device, records, curve, state, feature_info, wall_start)
        summary.update(_ood_summary(ood, ood_curves))
        if interrupted:
            save_checkpoint()
            summary["status"] = "interrupted"
            hook.vecaf_bench_run_end(run=info, summary=summary)
            raise RunInterrupted(run_dir, state.global_step, cfg.batch_budget)
        hook.vecaf_bench_run_end(run=info, summary=summary)
        if dist.is_main():
            ck = run_dir / CHECKPOINT
            if ck.exists():
                ck.unlink()
            self._print_summary(summary)
        return summary

    def _ood_splits(self, splits: DatasetSplits, factories: list[tuple[str, Any]], image_size: int) -> list[OODSplit]:
        """The OOD splits the run's shifts make, checked: unique names, labels in the run's classes."""
        cfg = self.cfg

        def load_other(name: str) -> DatasetSplits:
            return load_dataset(self.host, dataclasses.replace(cfg, dataset=name))

        out: list[OODSplit] = []
        for text, factory in factories:
            name, spec = parse_shift(text)
            request = ShiftRequest(
                spec=spec,
                splits=splits,
                seed=cfg.shift_seed,
                image_size=image_size,
                load_dataset=load_other,
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
                        f"{splits.num_classes} classes; map them with vecaf_bench.shifts.align_classes."
                    )
                if any(o.name == p.name for p in out):
                    raise UserError(f"OOD split '{o.name}' is named twice; give each --shift once.")
                out.append(o)
        if out:
            self.console.print(
                f"ood: {len(out)} split(s): {', '.join(o.name for o in out[:6])}{' …' if len(out) > 6 else ''}"
            )
        return out

    def _text_features(
        self, splits: DatasetSplits, labels: np.ndarray, ood: list[OODSplit], device: torch.device
    ) -> Any:
        """Annotation embeddings for text-using selectors, cached like image features."""
        from .text import text_features

        cfg = self.cfg
        domain, templates = cfg.text_domain, None
        if domain == "auto":  # the shifts' target domains, if they name any
            domain = None
            named = [o for o in ood if o.templates]
            if named:
                templates = list(dict.fromkeys(t for o in named for t in o.templates))
                domain = ", ".join(dict.fromkeys(d for o in named for d in o.domains)) or "shift"
        spec = cfg.text_encoder
        if spec == "auto":
            prefix, _ = parse_backbone(cfg.backbone)
            spec = cfg.backbone if prefix == "open_clip" else "minilm"
        name, _, arg = spec.partition(":")
        entry = self.host.registries["text_encoders"].get(name)
        if arg:
            model, _, pretrained = arg.partition("@")
            encoder = entry.factory(model, pretrained or None) if pretrained else entry.factory(model)
        else:
            encoder = entry.factory()
        captions = None
        if cfg.captions:
            from .text import load_captions

            paths = getattr(splits.pool, "paths", None)
            captions = load_captions(cfg.captions, len(splits.pool), paths)
        self.console.print(
            f"text: {encoder.name} on {'captions' if captions else 'class prompts'}"
            + (f", domain '{domain}'" if domain else "")
        )
        return text_features(
            encoder,
            classes=splits.class_names or splits.classes,
            labels=labels,
            captions=captions,
            domain=None if templates else domain,
            templates=templates,
            cache_root=cfg.cache_dir or default_cache_dir(),
            device=device,
            log=self.console.print,
        )

    def _summary(
        self,
        info: RunInfo,
        backbone: Any,
        splits: DatasetSplits,
        device: torch.device,
        records: list[dict[str, Any]],
        curve: list[dict[str, Any]],
        state: StepState,
        feature_info: dict[str, Any],
        wall_start: float,
    ) -> dict[str, Any]:
        cfg = self.cfg
        last = curve[-1] if curve else {}
        return {
            "run_id": info.run_id,
            "status": "finished",
            "selector": cfg.selector,
            "uses": info.uses,
            "dataset": cfg.dataset,
            "backbone": cfg.backbone,
            "backbone_fingerprint": backbone.fingerprint,
            "seed": cfg.seed,
            "label_budget": info.label_budget,
            "label_budget_requested": cfg.label_budget,
            "batch_budget": cfg.batch_budget,
            "batch_size": cfg.batch_size,
            "rounds_requested": cfg.rounds,
            "steps": state.global_step,
            "pool_size": info.pool_size,
            "test_size": info.test_size,
            "num_classes": info.num_classes,
            "image_size": (cfg.image_size or splits.default_image_size),
            "test_top1": last.get("top1"),
            "test_top5": last.get("top5"),
            "curve": curve,
            "rounds": records,
            "selection_seconds": float(sum(r["selection_seconds"] for r in records)),
            "selection_forward_batches": int(sum(r["selection_forward_batches"] for r in records)),
            "features": feature_info,
            "dataset_info": splits.info,
            "device": str(device),
            "device_name": device_name(device),
            "world_size": dist.world(),  # processes (torchrun), each with this device kind
            "wall_seconds": time.perf_counter() - wall_start,
            "versions": {**package_versions(), **self.host.versions(), "vecaf_bench": __version__},
            "git_commit": git_commit(),
        }

    @staticmethod
    def _ood_rows(s: dict[str, Any]) -> list[tuple[str, str]]:
        rows = []
        grouped = {n for n, v in s.get("ood", {}).items() if v.get("group")}
        for g, v in s.get("ood_groups", {}).items():
            if v["top1"] is not None:
                rows.append((f"ood {g} (mean of {v['splits']})", f"{v['top1']:.2f}% / {v['top5']:.2f}%"))
        for n, v in s.get("ood", {}).items():
            if n not in grouped and v["top1"] is not None:
                rows.append((f"ood {n}", f"{v['top1']:.2f}% / {v['top5']:.2f}%"))
        return rows

    def _print_summary(self, s: dict[str, Any]) -> None:
        out = Console(emoji=False)
        table = Table(title=f"vecaf-bench run {s['run_id']}", show_header=False, title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        rows = [
            ("selector", f"{s['selector']} (uses: {', '.join(s['uses']) or 'features only'})"),
            ("dataset", f"{s['dataset']}: pool {s['pool_size']}, test {s['test_size']}, {s['num_classes']} classes"),
            ("backbone", f"{s['backbone']} @ {s['image_size'] or 'default'} px on {s['device']}"),
            ("label budget", f"{s['label_budget']} images ({s['label_budget_requested']})"),
            ("batch budget", f"{s['steps']}/{s['batch_budget']} steps x {s['batch_size']}"),
            ("test top-1 / top-5", f"[bold green]{s['test_top1']:.2f}%[/] / {s['test_top5']:.2f}%"),
            ("curve (step: top-1)", "  ".join(f"{p['step']}: {p['top1']:.1f}" for p in s["curve"])),
            *self._ood_rows(s),
            ("selection", f"{s['selection_seconds']:.2f} s, {s['selection_forward_batches']} forward batches"),
            (
                "features",
                f"{'cache hit' if s['features'].get('cached') else 'extracted'} in {s['features']['seconds']:.1f} s",
            ),
            ("wall time", f"{s['wall_seconds']:.1f} s"),
            ("results", str(Path(self.cfg.out) / s["run_id"])),
        ]
        for k, v in rows:
            table.add_row(k, v)
        out.print(table)


class _NoHooks:
    """What the life-cycle hooks are on ranks other than 0: every call does nothing."""

    def __getattr__(self, name: str) -> Any:
        return lambda **kwargs: None


def _ood_groups(ood: list[OODSplit]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for o in ood:
        if o.group:
            groups.setdefault(o.group, []).append(o.name)
    return groups


def _ood_summary(ood: list[OODSplit], curves: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """summary['ood']: split -> last top-1/top-5 and curve; summary['ood_groups']: group means."""
    splits: dict[str, Any] = {}
    for o in ood:
        c = curves.get(o.name) or []
        splits[o.name] = {
            "top1": c[-1]["top1"] if c else None,
            "top5": c[-1]["top5"] if c else None,
            "curve": c,
            "size": len(o.images),
            "classes": int(o.mask.sum()) if o.mask is not None else None,
            "group": o.group,
            "domains": o.domains,
            **({"info": o.info} if o.info else {}),
        }
    groups = {}
    for g, names in _ood_groups(ood).items():
        done = [splits[n] for n in names if splits[n]["top1"] is not None]
        groups[g] = {
            "top1": float(np.mean([x["top1"] for x in done])) if done else None,
            "top5": float(np.mean([x["top5"] for x in done])) if done else None,
            "splits": len(names),
        }
    return {"ood": splits, "ood_groups": groups}


def selector_uses(selector: Any) -> frozenset[str]:
    return frozenset(getattr(selector, "uses", frozenset()))
