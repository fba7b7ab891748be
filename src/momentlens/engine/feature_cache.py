"""Classifier-only fine-tuning on cached trunk features (``cache_features: true``).

With ``finetune: fc`` the trunk is frozen, so its pooled features of a video do not
change from epoch to epoch. They are computed once per video (evaluation view: centre
clip, centre crop, no flip), and every epoch then trains the linear head on the cached
``(N, C)`` matrix: an epoch costs a few matrix products instead of a pass of the trunk.
The head trained this way is the model's ``fc``, so the saved model is an ordinary one.
A resumed run of this kind starts again from the first epoch: caching dominates its cost.

SIGINT / SIGTERM (a cluster's pre-emption) stop it as they stop any run: between two
batches of the caching or after an epoch's checkpoint, with exit status 143 (130), never
half-way through a checkpoint. A stop before the first epoch's checkpoint has nothing
to keep; under ``--overwrite`` the previous run is then put back.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from momentlens.analysis import metrics as M
from momentlens.engine.checkpoint import Optimisation, TrainState, save_training
from momentlens.engine.config import TrainConfig
from momentlens.engine.distributed import DistInfo, EpochSampler, all_gather_objects
from momentlens.engine.factory import (
    RunSetup,
    make_dataset,
    make_optimizer,
    make_plateau,
    make_scheduler,
)
from momentlens.engine.inference import Normalizer, make_loader
from momentlens.engine.loop import TrainingDiverged
from momentlens.engine.preflight import save_or_explain
from momentlens.engine.runtime import autocast
from momentlens.engine.signals import StopRequest
from momentlens.engine.tracking import write_history
from momentlens.utils import MomentlensError, progress


@torch.no_grad()
def pooled_features(model: nn.Module, dataset: Any, device: torch.device,
                    normalizer: Normalizer, amp: torch.dtype | None, batch_size: int,
                    workers: int, info: DistInfo, desc: str, stop: StopRequest | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(features (N, C), labels (N,))``: the trunk's globally pooled features per item,
    in item order, on every rank. Under several processes each rank computes its share
    (:class:`EpochSampler`'s evaluation order) and the shares are gathered.

    ``None`` when ``stop`` is agreed: after each batch that every rank has (the last
    rank's share is the smallest, by one item at most), and once more after the loop, so
    the ranks reach each agreement together."""
    model.eval()
    sampler = EpochSampler(len(dataset), batch_size, info, shuffle=False)
    last = DistInfo(info.world_size - 1, info.world_size)
    common = EpochSampler(len(dataset), batch_size, last, shuffle=False).batches_per_epoch()
    loader = make_loader(dataset, batch_size, workers, sampler, device)
    feats, labels, indices = [], [], []
    for b, (clips, y, index) in enumerate(progress(
            loader, total=len(loader), desc=desc, unit="batch",
            disable=None if info.is_main else True)):
        with autocast(device, amp):
            f = model.forward_features(normalizer(clips.to(device)))
        feats.append(f.float().mean(dim=(2, 3, 4)).cpu())
        labels.append(torch.as_tensor(y))
        indices.append(torch.as_tensor(index))
        if stop is not None and b < common and stop.agreed(info):
            return None
    if stop is not None and stop.agreed(info):
        return None
    mine = (torch.cat(indices), torch.cat(feats), torch.cat(labels)) if feats else None
    parts = [p for p in all_gather_objects(mine, info) if p is not None]
    order = torch.argsort(torch.cat([p[0] for p in parts]))
    return torch.cat([p[1] for p in parts])[order], torch.cat([p[2] for p in parts])[order]


def train_head_on_cache(setup: RunSetup, stop: StopRequest | None = None,
                        on_saved: Callable[[], None] | None = None) -> dict[str, Any]:
    """Cache the frozen trunk's features of both splits, then train the classifier on
    them for ``cfg.epochs`` epochs (validating, checkpointing and logging each).

    With ``stop`` (entered by the caller), a SIGINT / SIGTERM ends the run between two
    cached batches or after an epoch's checkpoint: the result is then ``{"stopped": True,
    "signal": N, "step": S, "epoch": E, "saved": E > 0}``. ``on_saved`` is called after
    each checkpoint.
    Otherwise it returns the last epoch's row with ``best_top1``, ``run_dir``, ``cache_seconds``,
    ``num_cached`` (videos), ``feature_dim`` (C) and ``cached_mean_norm`` (the mean L2
    norm of the training features, a check that they are not degenerate).
    """
    cfg, info, device = setup.cfg, setup.info, setup.device
    if setup.train_split.multi_label:
        raise MomentlensError("cache_features trains single-label heads only; train a "
                              "multi-label (M-MiT) split without cache_features")
    t0 = time.perf_counter()
    state = TrainState()
    train_cache = _cache(setup, True, stop)
    val_cache = None if train_cache is None else _cache(setup, False, stop)
    if train_cache is None or val_cache is None:
        return _stopped(stop, state)
    (xtr, ytr), (xva, yva) = train_cache, val_cache
    cache_seconds = time.perf_counter() - t0
    head = setup.model.classifier
    head.train()
    optimizer = make_optimizer(cfg, list(head.parameters()))
    steps_per_epoch = max(len(xtr) // cfg.batch_size, 1)
    opt = Optimisation(optimizer, make_scheduler(cfg, optimizer, steps_per_epoch),
                       make_plateau(cfg, optimizer))
    g = torch.Generator().manual_seed(cfg.seed)
    while state.epoch < cfg.epochs:
        t_epoch = time.perf_counter()
        loss = _head_epoch(head, xtr, ytr, opt, g, cfg, device, state)
        state.epoch, state.step = state.epoch + 1, state.step + steps_per_epoch
        with torch.no_grad():
            probs = F.softmax(head(xva.to(device)), dim=1).cpu().numpy()
        summary = M.summarize(probs, yva.numpy(), setup.classes)
        row = {"epoch": state.epoch, "step": state.step, "train_loss": loss,
               "val_top1": summary["top1"], "val_top5": summary["top5"],
               "epoch_seconds": round(time.perf_counter() - t_epoch, 4),
               "cache_seconds": round(cache_seconds, 2)}
        state.history.append(row)
        if opt.plateau is not None:
            opt.plateau.step(row["val_top1"])
        improved = row["val_top1"] > state.best_top1
        if improved:
            state.best_top1, state.best_epoch = row["val_top1"], state.epoch
        if info.is_main:
            _save_and_log(setup, state, opt, improved)
        if on_saved is not None:
            on_saved()
        if stop is not None and state.epoch < cfg.epochs and stop.agreed(info):
            return _stopped(stop, state)
    return {**state.history[-1], "best_top1": state.best_top1, "run_dir": str(setup.run_dir),
            "cache_seconds": cache_seconds, "num_cached": int(len(xtr) + len(xva)),
            "feature_dim": int(xtr.shape[1]), "cached_mean_norm": float(np.mean(
                np.linalg.norm(xtr.numpy(), axis=1)))}


def _stopped(stop: StopRequest | None, state: TrainState) -> dict[str, Any]:
    assert stop is not None and stop.signal is not None
    return {"stopped": True, "signal": int(stop.signal), "step": state.step,
            "epoch": state.epoch, "saved": state.epoch > 0}


def _cache(setup: RunSetup, train: bool, stop: StopRequest | None = None
           ) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Pooled features ``(N, C)`` and labels ``(N,)`` of one split, evaluation view
    (``None`` when stopped)."""
    cfg = setup.cfg
    split = setup.train_split if train else setup.val_split
    dataset = make_dataset(cfg, setup.spec, split, False, setup.run_dir)
    return pooled_features(setup.model, dataset, setup.device, setup.normalizer, setup.amp,
                           cfg.batch_size, cfg.workers, setup.info,
                           f"cache features ({'training' if train else 'validation'})", stop)


def _head_epoch(head: nn.Module, x: torch.Tensor, y: torch.Tensor, opt: Optimisation,
                g: torch.Generator, cfg: TrainConfig, device: torch.device, state: TrainState
                ) -> float:
    """One shuffled pass of full batches over the cached ``x (N, C)``; the mean loss.
    A loss that is not finite stops the run before anything of it is saved."""
    steps = max(len(x) // cfg.batch_size, 1)
    order = torch.randperm(len(x), generator=g)
    loss_sum = 0.0
    for b in range(steps):
        idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
        loss = F.cross_entropy(head(x[idx].to(device)), y[idx].to(device),
                               label_smoothing=cfg.label_smoothing)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"the loss became {value} at step {state.step + b + 1} (epoch "
                f"{state.epoch + 1}, cached features); stopped, the last good checkpoint is "
                f"kept. Try a lower --lr (now {cfg.lr})")
        opt.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        opt.optimizer.step()
        opt.scheduler.step()
        loss_sum += value
    return loss_sum / steps


def _save_and_log(setup: RunSetup, state: TrainState, opt: Optimisation, improved: bool) -> None:
    cfg, row = setup.cfg, state.history[-1]
    save_or_explain(setup.run_dir, lambda: save_training(
        setup.run_dir, setup.model, setup.meta, state, opt, cfg.to_dict(),
        tags=("last", "best") if improved else ("last",)))
    write_history(setup.run_dir, state.history)
    print(f"epoch {row['epoch']}/{cfg.epochs} (cached features)  loss "
          f"{row['train_loss']:.4f}  val top-1 {100 * row['val_top1']:.1f}%  "
          f"{row['epoch_seconds']:.3f} s", file=sys.stderr)
