"""``momentlens train``: the training loop and validation.

In the spirit of torchvision's ``references/video_classification/train.py``:
:func:`train_one_epoch` (in :mod:`~momentlens.engine.loop`, importable from here) and
:func:`validate` are top-level functions and :func:`run` wires data, model, optimiser and
checkpoints together; batches come from :mod:`~momentlens.engine.feed` (one loader per
run, workers kept across epochs) through :mod:`~momentlens.engine.prefetch`. The parts
come from :mod:`~momentlens.engine.factory`, checkpoints from :mod:`~momentlens.engine.checkpoint`.
The same code runs in one process or under ``torchrun`` (DistributedDataParallel;
logging and checkpoints on rank 0 only).

Exact resumption: item randomness depends only on ``(seed, epoch, index)``, the batch
order only on ``(seed, epoch)``, and the learning rate only on the scheduler's state,
which every checkpoint holds, so a run resumed from a checkpoint replays exactly what
the uninterrupted run would have done.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from momentlens.analysis import metrics as M
from momentlens.analysis import multilabel as ML
from momentlens.data.dataset import VideoDataset
from momentlens.engine import checkpoint as ckpt
from momentlens.engine.checkpoint import Optimisation, TrainState
from momentlens.engine.config import TrainConfig, save_config
from momentlens.engine.distributed import (
    DistInfo,
    EpochSampler,
    all_gather_objects,
    union_over_ranks,
)
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
from momentlens.engine.feed import TrainFeed, device_augment_dataset, loader_workers
from momentlens.engine.inference import Normalizer, score_dataset
from momentlens.engine.loop import TrainingDiverged, save_due, train_one_epoch
from momentlens.engine.prefetch import DeviceAugment
from momentlens.engine.preflight import (
    probe_dropped,
    recheck_quarantine,
    save_or_explain,
    warn_empty_classes,
)
from momentlens.engine.runlock import Ownership
from momentlens.engine.runtime import environment, resolve_device, seed_everything
from momentlens.engine.signals import StopRequest
from momentlens.engine.tracking import Board, log_epoch, open_tensorboard
from momentlens.engine.writes import writing
from momentlens.utils import MomentlensError, write_json_atomic

log = logging.getLogger(__name__)

# The loop itself lives in engine/loop.py; these names stay importable from here.
__all__ = ["StopRequest", "TrainingDiverged", "run", "train_one_epoch", "validate"]


def validate(
    model: nn.Module, dataset: VideoDataset, cfg: TrainConfig, device: torch.device,
    normalizer: Normalizer, amp: torch.dtype | None, info: DistInfo, classes: list[str],
    epoch: int,
) -> dict[str, Any]:
    """Clip- and video-level top-1/top-5 (fractions) on the validation split; unreadable
    videos are left out and counted. A multi-label split (multi-hot targets) adds
    ``val_map_macro``/``val_map_micro``; top-1 then counts the best class being one of a
    video's labels, and a ``bce`` model is scored with sigmoids."""
    dataset.set_epoch(epoch)
    multi = bool(getattr(dataset, "multi_label", False))
    scores = score_dataset(model, dataset, device, normalizer, batch_size=cfg.batch_size,
                           workers=loader_workers(cfg.workers, info), amp=amp, info=info,
                           desc="validate", sigmoid=cfg.resolved_loss(multi) == "bce")
    failed = union_over_ranks(dataset.failed_indices(), info)
    keep = np.array([i not in failed for i in scores.indices], dtype=bool)
    video = scores.video_probs[keep]
    labels = scores.labels[keep]
    n_views = scores.clip_probs.shape[1]
    clip_probs = scores.clip_probs[keep].reshape(-1, len(classes))
    if multi:
        summary = ML.summarize_multilabel(video, labels.reshape(len(video), -1), classes,
                                          clip_probs=clip_probs)
    else:
        summary = M.summarize(video, labels, classes, clip_probs=clip_probs,
                              clip_labels=np.repeat(labels, n_views))
    extra = ({"val_map_macro": summary["map_macro"], "val_map_micro": summary["map_micro"]}
             if multi else {})
    return {**extra, "val_top1": summary["top1"], "val_top5": summary["top5"],
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
            with StopRequest() as stop:
                result = train_head_on_cache(setup, stop, owner.first_checkpoint)
            if result.get("stopped"):
                return _cache_stopped(result, owner, setup)
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
    data = _training_data(setup)
    if resume:
        recheck_quarantine((data.train, data.val), info)
    optimizer = make_optimizer(cfg, [p for p in setup.model.parameters() if p.requires_grad])
    opt = Optimisation(optimizer, make_scheduler(cfg, optimizer, data.steps_per_epoch),
                       make_plateau(cfg, optimizer))
    state = (ckpt.restore_training(run_dir, setup.model, opt, cfg.to_dict(), info)
             if resume else None)
    if resume and state is None:
        log.info("no checkpoint in %s yet: starting from scratch", run_dir)
    elif state is not None and info.is_main:
        print(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}",
              file=sys.stderr)

    def save(tags: tuple[str, ...] = ("last",), keep: bool = False) -> None:
        # Every rank saves here at the same points; rank 0 writes every rank's sums of
        # the epoch so far, so that a resumed epoch's metrics cover all its batches.
        sums = all_gather_objects(state.epoch_sums, info) if info.enabled else None
        if info.is_main:
            save_or_explain(run_dir, lambda: ckpt.save_training(
                run_dir, setup.model, setup.meta, state, opt, cfg.to_dict(), tags=tags,
                keep=keep, epoch_sums=sums))

    # A resumed run hides the events a killed one logged after its checkpoint (purge).
    purge = None if state is None else state.step + 1
    # From here a SIGINT / SIGTERM stops the run cleanly (it has a checkpoint to resume
    # from once step 0 is saved): during that save and the loader's start as well as in
    # the loop, not only once the loop runs.
    with StopRequest() as stop:
        if state is None:
            state = TrainState()
            save()  # step 0: a resume before the first step starts from these weights
            owner.first_checkpoint()
        writer = open_tensorboard(run_dir / "tensorboard", purge) if info.is_main else None
        row = _epochs(setup, _wrap(setup), data, state, opt, writer, save, stop)
    if writer is not None:
        writer.close()
    if row.get("stopped"):
        return row
    return {**row, "best_top1": state.best_top1, "best_epoch": state.best_epoch,
            "run_dir": str(run_dir)}


def _epochs(setup: RunSetup, model: nn.Module, data: _Data, state: TrainState,
            opt: Optimisation, writer: Board | None, save: Callable[..., None],
            stop: StopRequest) -> dict[str, Any]:
    """Epochs until ``cfg.epochs`` on one loader whose workers persist (see
    :mod:`~momentlens.engine.feed`); the last epoch's row, or ``_stopped``'s."""
    cfg, info = setup.cfg, setup.info

    def on_step() -> None:
        if save_due(cfg, state):
            save()

    row: dict[str, Any] = {}
    workers = loader_workers(cfg.workers, info)
    if stop.agreed(info):  # stopped before the loop: the checkpoint there is the last
        return _stopped(stop.signal, state, setup)
    with TrainFeed(data.train, data.sampler, workers, setup.device,
                   cfg.persistent_workers) as feed:
        while state.epoch < cfg.epochs:
            loader = feed.epoch(state.epoch, start_batch=state.batch_in_epoch)
            t0 = time.perf_counter()
            stats = train_one_epoch(model, loader, opt.optimizer, opt.scheduler, state, cfg,
                                    setup.device, setup.normalizer, setup.amp, info, stop,
                                    on_step, augment=data.augment)
            # Agreed again: a signal that came after the epoch's last agreement must
            # stop every rank here or none (each rank's own flag may differ).
            if stop.agreed(info):
                feed.close()
                save()
                return _stopped(stop.signal, state, setup)
            if info.is_main:
                probe_dropped(data.train, data.sampler)
            stats["epoch_seconds"] = round(time.perf_counter() - t0, 2)
            row = _end_epoch(setup, state, opt, stats, data.val, data.train, writer, save)
    return row


@dataclass
class _Data:
    train: VideoDataset
    val: VideoDataset
    sampler: EpochSampler  # this rank's training sampler
    steps_per_epoch: int  # optimiser steps
    augment: DeviceAugment | None  # crop and flip on the device (device_augment)


def _training_data(setup: RunSetup) -> _Data:
    """The datasets, this rank's training sampler, optimiser steps per epoch and the
    device-side augmentation (``device_augment``: the workers then only decode and resize)."""
    cfg, info = setup.cfg, setup.info
    per_rank_batch = cfg.batch_size // info.world_size
    if per_rank_batch * info.world_size != cfg.batch_size:
        raise MomentlensError(f"--batch-size {cfg.batch_size} must divide by the number of "
                              f"processes ({info.world_size})")
    train_ds = make_dataset(cfg, setup.spec, setup.train_split, True, setup.run_dir)
    val_ds = make_dataset(cfg, setup.spec, setup.val_split, False, setup.run_dir,
                          num_clips=cfg.val_clips)
    augment = None
    if cfg.device_augment:
        random_crop, flip_p = device_augment_dataset(train_ds)
        augment = DeviceAugment(cfg.seed, setup.spec.size, random_crop, flip_p)
    sampler = EpochSampler(len(train_ds), per_rank_batch, info, seed=cfg.seed,
                           max_batches=cfg.max_steps_per_epoch * cfg.accum_steps)
    steps_per_epoch = sampler.batches_per_epoch() // cfg.accum_steps
    if steps_per_epoch == 0:
        raise MomentlensError(
            f"the training split has {len(train_ds)} videos, fewer than one batch of "
            f"{cfg.batch_size * cfg.accum_steps}; lower --batch-size")
    return _Data(train_ds, val_ds, sampler, steps_per_epoch, augment)


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
               val_ds: VideoDataset, train_ds: VideoDataset, writer: Board | None,
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
    failed = len(union_over_ranks(train_ds.failed_indices(state.epoch - 1), setup.info))
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


def _cache_stopped(result: dict[str, Any], owner: Ownership, setup: RunSetup
                   ) -> dict[str, Any]:
    """A ``cache_features`` run stopped by a signal: before its first checkpoint it has
    nothing to keep, and a run it was replacing (``--overwrite``) is put back."""
    restored = owner.replacing and not result["saved"]
    if not result["saved"]:
        owner.abandon()
    if setup.info.is_main:
        where = (f"after epoch {result['epoch']}" if result["saved"]
                 else "while caching features, before the first checkpoint")
        how = ("run the same command again to start the new run" if restored else
               f"continue with: momentlens train --resume {setup.run_dir} (a run on "
               "cached features caches them again and restarts from its first epoch)")
        print(f"stopped by {signal.Signals(result['signal']).name} {where}; {how}",
              file=sys.stderr)
    return {**result, "run_dir": str(setup.run_dir)}


def _stopped(signum: int, state: TrainState, setup: RunSetup) -> dict[str, Any]:
    if setup.info.is_main:
        print(f"stopped by {signal.Signals(signum).name} at step {state.step}; "
              f"continue with: momentlens train --resume {setup.run_dir}", file=sys.stderr)
    return {"stopped": True, "signal": int(signum), "step": state.step,
            "run_dir": str(setup.run_dir)}
