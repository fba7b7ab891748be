"""``momentlens train``: the training loop and validation.

In the spirit of torchvision's ``references/video_classification/train.py``:
:func:`train_one_epoch` and :func:`validate` are top-level functions and :func:`run`
wires data, model, optimiser and checkpoints together. The parts come from
:mod:`~momentlens.engine.factory`, checkpoints from :mod:`~momentlens.engine.checkpoint`.
The same code runs in one process or under ``torchrun`` (DistributedDataParallel;
logging and checkpoints on rank 0 only).

Exact resumption: item randomness depends only on ``(seed, epoch, index)``, the batch
order only on ``(seed, epoch)``, and the learning rate only on the scheduler's state,
which every checkpoint holds, so a run resumed from a checkpoint replays exactly what
the uninterrupted run would have done.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from momentlens.analysis import metrics as M
from momentlens.data.dataset import VideoDataset
from momentlens.engine import checkpoint as ckpt
from momentlens.engine.checkpoint import Optimisation, TrainState
from momentlens.engine.config import TrainConfig, save_config
from momentlens.engine.distributed import DistInfo, EpochSampler, all_reduce_mean
from momentlens.engine.distributed import cleanup as dist_cleanup
from momentlens.engine.distributed import setup as dist_setup
from momentlens.engine.factory import (
    RunSetup,
    make_dataset,
    make_optimizer,
    make_plateau,
    make_scheduler,
    setup_run,
)
from momentlens.engine.feature_cache import train_head_on_cache
from momentlens.engine.inference import Normalizer, make_loader, score_dataset
from momentlens.engine.preflight import (
    probe_dropped,
    recheck_quarantine,
    save_or_explain,
    warn_empty_classes,
)
from momentlens.engine.runlock import Ownership
from momentlens.engine.runtime import autocast, environment, resolve_device, seed_everything
from momentlens.engine.signals import StopRequest
from momentlens.engine.tracking import log_epoch, open_tensorboard
from momentlens.engine.writes import writing
from momentlens.utils import MomentlensError, progress, write_json_atomic

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


class TrainingDiverged(MomentlensError):
    """The loss became NaN or infinite."""


class _Meter:
    """Loss, accuracy and time of an epoch so far: seconds waiting for data vs computing."""

    SUMS = ("seen", "correct", "loss_sum", "wait", "busy")

    def __init__(self, world_size: int, sums: dict[str, float] | None = None) -> None:
        self.world_size = world_size
        self.seen = self.correct = 0
        self.loss_sum = self.wait = self.busy = 0.0
        for key, value in (sums or {}).items():  # an epoch resumed part-way
            setattr(self, key, type(getattr(self, key))(value))
        self._mark = time.perf_counter()

    def sums(self) -> dict[str, float]:
        return {key: getattr(self, key) for key in self.SUMS}

    def data_ready(self) -> None:
        now = time.perf_counter()
        self.wait, self._mark = self.wait + now - self._mark, now

    def batch_done(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor) -> None:
        n = len(labels)
        self.seen += n
        self.loss_sum += loss.item() * n
        self.correct += int((logits.argmax(1) == labels).sum())
        now = time.perf_counter()
        self.busy, self._mark = self.busy + now - self._mark, now

    def clips_per_s(self) -> float:  # all processes together
        return self.seen * self.world_size / max(self.wait + self.busy, 1e-9)

    def wait_share(self) -> float:
        return self.wait / max(self.wait + self.busy, 1e-9)


# ----------------------------------------------------------------------------- the loop


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    state: TrainState,
    cfg: TrainConfig,
    device: torch.device,
    normalizer: Normalizer,
    amp: torch.dtype | None,
    info: DistInfo,
    stop: StopRequest,
    on_step: Callable[[], None],
) -> dict[str, float]:
    """One pass over ``loader`` (which already skips batches done before a resume).

    Batches are ``(clips uint8 (B, C, T, H, W), labels (B,), indices)``. One optimiser
    step, then one ``scheduler`` step, every ``cfg.accum_steps`` batches; ``on_step``
    after each. Returns the epoch's mean loss and top-1 (over all processes; a resumed
    epoch's include the batches before the resume: ``state.epoch_sums``), clips/s, the
    share of time spent waiting for data, and the last step's lr.
    """
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    meter = _Meter(info.world_size, state.epoch_sums)
    lr = optimizer.param_groups[0]["lr"]
    bar = progress(loader, total=len(loader), desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   unit="batch", initial=0, disable=None if info.is_main else True)
    for clips, labels, _ in bar:
        meter.data_ready()
        x = normalizer(clips.to(device, non_blocking=True))
        y = labels.to(device, non_blocking=True)
        last_micro = state.batch_in_epoch % cfg.accum_steps == cfg.accum_steps - 1
        # DDP averages gradients only on the micro-batch that completes an accumulation.
        sync = model.no_sync() if (info.enabled and not last_micro) else contextlib.nullcontext()
        with sync:
            logits, loss = _forward_backward(model, x, y, cfg, device, amp, state)
        state.batch_in_epoch += 1
        if last_micro:
            lr = _optimizer_step(optimizer, scheduler, trainable, cfg.clip_grad)
            state.step += 1
        meter.batch_done(loss, logits, y)
        state.epoch_sums = meter.sums()
        if info.is_main and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{meter.loss_sum / meter.seen:.3f}",
                            clips_s=f"{meter.clips_per_s():.1f}",
                            wait=f"{meter.wait_share():.0%}", refresh=False)
        if last_micro:
            on_step()
            if stop.agreed(info):
                break
    return {
        "train_loss": all_reduce_mean(meter.loss_sum / max(meter.seen, 1), info),
        "train_top1": all_reduce_mean(meter.correct / max(meter.seen, 1), info),
        "clips_per_s": meter.clips_per_s(),
        "data_wait": meter.wait_share(),
        "lr": lr,
    }


def _forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                      device: torch.device, amp: torch.dtype | None, state: TrainState
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, K), loss)`` of one micro-batch; its gradients are added to ``.grad``."""
    with autocast(device, amp):
        logits = model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
    if not torch.isfinite(loss):
        raise TrainingDiverged(
            f"the loss became {loss.item()} at step {state.step} (epoch "
            f"{state.epoch + 1}); stopped, the last good checkpoint is kept. Try a "
            f"lower --lr (now {cfg.lr}) or --set clip_grad=1.0")
    (loss / cfg.accum_steps).backward()
    return logits, loss


def _optimizer_step(optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
                    params: list[nn.Parameter], clip_grad: float) -> float:
    """One update at the scheduler's current lr, then the next lr; returns the lr used."""
    if clip_grad:
        torch.nn.utils.clip_grad_norm_(params, clip_grad)
    lr = optimizer.param_groups[0]["lr"]
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return lr


def validate(
    model: nn.Module, dataset: VideoDataset, cfg: TrainConfig, device: torch.device,
    normalizer: Normalizer, amp: torch.dtype | None, info: DistInfo, classes: list[str],
    epoch: int,
) -> dict[str, Any]:
    """Clip- and video-level top-1/top-5 (fractions) on the validation split; unreadable
    videos are left out and counted."""
    dataset.set_epoch(epoch)
    scores = score_dataset(model, dataset, device, normalizer, batch_size=cfg.batch_size,
                           workers=cfg.workers, amp=amp, info=info, desc="validate")
    failed = dataset.failed_indices()
    keep = np.array([i not in failed for i in scores.indices], dtype=bool)
    video = scores.video_probs[keep]
    labels = scores.labels[keep]
    n_views = scores.clip_probs.shape[1]
    summary = M.summarize(video, labels, classes,
                          clip_probs=scores.clip_probs[keep].reshape(-1, len(classes)),
                          clip_labels=np.repeat(labels, n_views))
    return {"val_top1": summary["top1"], "val_top5": summary["top5"],
            "val_clip_top1": summary["clip_top1"], "val_clip_top5": summary["clip_top5"],
            "val_mean_class_top1": summary["mean_class_top1"],
            "val_videos": int(keep.sum()), "val_unreadable": int((~keep).sum())}


# ----------------------------------------------------------------------------- run


def run(cfg: TrainConfig, resume: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; with ``resume``, continue ``cfg.out`` from its last checkpoint.

    ``cfg.out`` must not hold a run already unless ``resume`` or ``overwrite`` (see
    :mod:`momentlens.engine.runlock`); it is locked while the run lasts. Returns the last
    epoch's row of ``metrics.jsonl`` with ``best_top1``, ``best_epoch`` and ``run_dir``,
    or ``{"stopped": True, "signal": N, ...}`` after SIGINT/SIGTERM.
    """
    if not cfg.out:
        raise MomentlensError("--out RUN_DIR is required")
    device = resolve_device(cfg.device)
    info = dist_setup(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    owner = Ownership(Path(cfg.out), info)
    try:
        owner.take(resume, overwrite)
        seed_everything(cfg.seed, cfg.deterministic)
        setup = setup_run(cfg, Path(cfg.out), device, info)
        if info.is_main:
            _write_run_files(setup)
            warn_empty_classes(setup.train_split, setup.val_split)
        if cfg.cache_features:
            result = train_head_on_cache(setup)
            owner.first_checkpoint()
            return result
        return _fit(setup, resume, owner)
    except torch.OutOfMemoryError:
        raise MomentlensError(
            f"out of memory on {device} with --batch-size {cfg.batch_size}; try "
            f"--batch-size {max(cfg.batch_size // 2, 1)} (with --set accum_steps="
            f"{cfg.accum_steps * 2} to keep the effective batch)") from None
    except BaseException:
        owner.abandon()
        raise
    finally:
        owner.release()
        dist_cleanup()


def _write_run_files(setup: RunSetup) -> None:
    with writing(setup.run_dir, "run folder"):
        setup.run_dir.mkdir(parents=True, exist_ok=True)
    with writing(setup.run_dir / "config.yaml"):
        save_config(setup.cfg, setup.run_dir / "config.yaml")
    with writing(setup.run_dir / "input.json"):
        write_json_atomic(setup.run_dir / "input.json", setup.spec.to_dict())
    with writing(setup.run_dir / "env.json"):
        write_json_atomic(setup.run_dir / "env.json", environment(setup.device))


def _fit(setup: RunSetup, resume: bool, owner: Ownership) -> dict[str, Any]:
    """The epoch loop: train, validate, checkpoint, log; stops cleanly on SIGINT/SIGTERM."""
    cfg, info, run_dir = setup.cfg, setup.info, setup.run_dir
    train_ds, val_ds, sampler, steps_per_epoch = _training_data(setup)
    if resume:
        recheck_quarantine((train_ds, val_ds), info)
    optimizer = make_optimizer(cfg, [p for p in setup.model.parameters() if p.requires_grad])
    opt = Optimisation(optimizer, make_scheduler(cfg, optimizer, steps_per_epoch),
                       make_plateau(cfg, optimizer))
    state = ckpt.restore_training(run_dir, setup.model, opt, cfg.to_dict()) if resume else None
    if resume and state is None:
        log.info("no checkpoint in %s yet: starting from scratch", run_dir)
    elif state is not None and info.is_main:
        print(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}",
              file=sys.stderr)

    def save(tags: tuple[str, ...] = ("last",), keep: bool = False) -> None:
        if info.is_main:
            save_or_explain(run_dir, lambda: ckpt.save_training(
                run_dir, setup.model, setup.meta, state, opt, cfg.to_dict(), tags=tags,
                keep=keep))

    def on_step() -> None:
        if cfg.checkpoint_steps and state.step % cfg.checkpoint_steps == 0:
            save()

    # A resumed run hides the events a killed one logged after its checkpoint (purge).
    purge = None if state is None else state.step + 1
    if state is None:
        state = TrainState()
        save()  # step 0: a resume before the first step starts from these weights
        owner.first_checkpoint()
    model = _wrap(setup)
    writer = open_tensorboard(run_dir / "tensorboard", purge) if info.is_main else None
    row: dict[str, Any] = {}
    with StopRequest() as stop:
        while state.epoch < cfg.epochs:
            train_ds.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
            loader = make_loader(train_ds, sampler.batch_size, cfg.workers, sampler, setup.device)
            t0 = time.perf_counter()
            stats = train_one_epoch(model, loader, optimizer, opt.scheduler, state, cfg,
                                    setup.device, setup.normalizer, setup.amp, info, stop, on_step)
            if stop.signal is not None:
                save()
                return _stopped(stop.signal, state, setup)
            if info.is_main:
                probe_dropped(train_ds, sampler)
            stats["epoch_seconds"] = round(time.perf_counter() - t0, 2)
            row = _end_epoch(setup, state, opt, stats, val_ds, train_ds, writer, save)
    if writer is not None:
        writer.close()
    return {**row, "best_top1": state.best_top1, "best_epoch": state.best_epoch,
            "run_dir": str(run_dir)}


def _training_data(setup: RunSetup) -> tuple[VideoDataset, VideoDataset, EpochSampler, int]:
    """``(train set, validation set, this rank's training sampler, optimiser steps/epoch)``."""
    cfg, info = setup.cfg, setup.info
    per_rank_batch = cfg.batch_size // info.world_size
    if per_rank_batch * info.world_size != cfg.batch_size:
        raise MomentlensError(f"--batch-size {cfg.batch_size} must divide by the number of "
                              f"processes ({info.world_size})")
    train_ds = make_dataset(cfg, setup.spec, setup.train_split, True, setup.run_dir)
    val_ds = make_dataset(cfg, setup.spec, setup.val_split, False, setup.run_dir,
                          num_clips=cfg.val_clips)
    sampler = EpochSampler(len(train_ds), per_rank_batch, info, seed=cfg.seed,
                           max_batches=cfg.max_steps_per_epoch * cfg.accum_steps)
    steps_per_epoch = sampler.batches_per_epoch() // cfg.accum_steps
    if steps_per_epoch == 0:
        raise MomentlensError(
            f"the training split has {len(train_ds)} videos, fewer than one batch of "
            f"{cfg.batch_size * cfg.accum_steps}; lower --batch-size")
    return train_ds, val_ds, sampler, steps_per_epoch


def _wrap(setup: RunSetup) -> nn.Module:
    """The module the loop calls: DDP around the model under several processes, compiled
    with ``compile: true``. Checkpoints keep saving the bare model."""
    model: nn.Module = setup.model
    if setup.info.enabled:
        device = setup.device
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if setup.cfg.compile:
        model = torch.compile(model)
    return model


def _end_epoch(setup: RunSetup, state: TrainState, opt: Optimisation, stats: dict[str, Any],
               val_ds: VideoDataset, train_ds: VideoDataset, writer: SummaryWriter | None,
               save: Callable[..., None]) -> dict[str, Any]:
    """Validate when due, step the plateau schedule, checkpoint and log the epoch's row."""
    cfg = setup.cfg
    state.epoch += 1
    state.batch_in_epoch = 0
    state.epoch_sums = {}
    row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, **stats}
    if (cfg.val_every and state.epoch % cfg.val_every == 0) or state.epoch == cfg.epochs:
        row.update(validate(setup.model, val_ds, cfg, setup.device, setup.normalizer,
                            setup.amp, setup.info, setup.classes, state.epoch))
        if opt.plateau is not None:
            opt.plateau.step(row["val_top1"])
    failed = len(train_ds.failed_indices(state.epoch - 1))
    row["train_unreadable"] = failed
    improved = "val_top1" in row and row["val_top1"] > state.best_top1
    if improved:
        state.best_top1, state.best_epoch = row["val_top1"], state.epoch
    state.history.append(row)
    save(("last", "best") if improved else ("last",),
         keep=bool(cfg.save_every and state.epoch % cfg.save_every == 0))
    if setup.info.is_main:
        log_epoch(row, cfg, setup.run_dir, writer, failed, len(train_ds), state.history)
    return row


def _stopped(signum: int, state: TrainState, setup: RunSetup) -> dict[str, Any]:
    if setup.info.is_main:
        print(f"stopped by {signal.Signals(signum).name} at step {state.step}; "
              f"continue with: momentlens train --resume {setup.run_dir}", file=sys.stderr)
    return {"stopped": True, "signal": int(signum), "step": state.step,
            "run_dir": str(setup.run_dir)}
