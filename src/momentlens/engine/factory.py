"""What a training run is built from: model, input record, datasets, optimiser, LR schedule.

Both training loops (:mod:`momentlens.engine.train` and the cached-features loop of
:mod:`momentlens.engine.feature_cache`) build their parts here, so neither imports the
other. The schedule is composed from ``torch.optim.lr_scheduler``; its ``state_dict``
travels in every checkpoint.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from momentlens.data.dataset import VideoDataset
from momentlens.data.layout import Split, load_split, load_training_split
from momentlens.engine.config import TrainConfig
from momentlens.engine.distributed import DistInfo
from momentlens.engine.inference import Normalizer
from momentlens.engine.runtime import amp_dtype
from momentlens.models import registry
from momentlens.models.base import set_finetune
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

log = logging.getLogger(__name__)

#: Settings of the training config that are also model builder options.
BUILDER_SETTINGS = ("width", "frames", "size", "last_stride", "style", "conv1_t_size",
                    "conv1_t_stride", "no_max_pool", "shortcut", "layer3_stride",
                    "layer2_stride", "late_t_stride", "temporal_stages", "dilate")


# ----------------------------------------------------------------------------- model, data


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    """The builder options a run's model is made with (also stored in its model files):
    the settings of :data:`BUILDER_SETTINGS` that the model's builder accepts, those left
    unset (``None``) out, completed with what a ``pretrained`` file implies
    (:func:`momentlens.models.weights.options_for_pretrained`). An option set for a model
    that has no such option is an error."""
    allowed = set(registry.model_options(cfg.model))
    # Settings that are "not set" by default (None) were asked for when they have a value.
    unused = [k for k in BUILDER_SETTINGS if k not in allowed and getattr(cfg, k) is not None
              and TrainConfig.__dataclass_fields__[k].default is None]
    if unused:
        raise MomentlensError(f"model {cfg.model!r} has no option {', '.join(unused)}; its "
                              f"options: {', '.join(sorted(allowed))}")
    options = {k: getattr(cfg, k) for k in BUILDER_SETTINGS
               if k in allowed and getattr(cfg, k) is not None}
    if cfg.pretrained:
        from momentlens.models.weights import options_for_pretrained

        options = options_for_pretrained(cfg.model, cfg.pretrained, options)
    return options


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    """A fresh model for ``num_classes`` classes, with ``cfg.pretrained`` weights if set."""
    model = registry.create_model(cfg.model, num_classes=num_classes, **model_options(cfg))
    if cfg.pretrained:
        from momentlens.models.weights import load_pretrained

        report = load_pretrained(model, cfg.pretrained)
        log.info("pretrained weights from %s: %s", cfg.pretrained, report)
    return model


def input_spec(cfg: TrainConfig, model: nn.Module) -> InputSpec:
    """The model's own input record with the run's overrides (sampler, stride, resize,
    norm; ``auto``/0 keep the model's)."""
    return model.input_spec.override(sampler=cfg.sampler, stride=cfg.stride,
                                     resize=cfg.resize, norm=cfg.norm)


def model_meta(cfg: TrainConfig, spec: InputSpec, classes: list[str],
               multi_label: bool = False) -> dict[str, Any]:
    """What a model file must say for ``evaluate``/``predict``/``cam`` to rebuild and feed it.

    ``multi_label``: whether the model scores classes independently (trained with
    binary cross-entropy, :meth:`TrainConfig.resolved_loss` on multi-label data or
    ``loss: bce``): ``evaluate``/``predict`` then give sigmoid scores, not a softmax.
    ``multi_label_data``: whether it was trained on multi-label data (M-MiT)."""
    return {
        "model": cfg.model,
        "num_classes": len(classes),
        "options": model_options(cfg),
        "classes": classes,
        "input": spec.to_dict(),
        "config": cfg.to_dict(),
        "multi_label": cfg.resolved_loss(multi_label) == "bce",
        "multi_label_data": bool(multi_label),
    }


def make_dataset(cfg: TrainConfig, spec: InputSpec, split: Split, train: bool,
                 run_dir: Path | None, num_clips: int = 1) -> VideoDataset:
    """The training (random views) or evaluation (centre views) dataset of ``split``
    (multi-hot targets when the split is multi-label); unreadable videos are listed in ``run_dir/quarantine.jsonl`` when a folder is given."""
    return VideoDataset(
        split.records, num_classes=len(split.classes), **spec.dataset_options(),
        train=train, backend=cfg.backend, seed=cfg.seed,
        quarantine_path=(run_dir / "quarantine.jsonl") if run_dir else None,
        num_clips=num_clips, colour_jitter=cfg.colour_jitter, grayscale_p=cfg.grayscale_p,
        flip_p=cfg.flip_p, multi_label=split.multi_label,
    )


@dataclass
class RunSetup:
    """What both training loops start from: the settings, the data splits, the model on
    its device with its input record, and how batches reach it."""

    cfg: TrainConfig
    run_dir: Path
    train_split: Split
    val_split: Split
    model: nn.Module
    spec: InputSpec
    meta: dict[str, Any]  # see model_meta
    device: torch.device
    normalizer: Normalizer
    amp: torch.dtype | None  # autocast dtype; None = fp32
    info: DistInfo

    @property
    def classes(self) -> list[str]:
        return self.train_split.classes


def setup_run(cfg: TrainConfig, run_dir: Path, device: torch.device, info: DistInfo
              ) -> RunSetup:
    """Read the splits and build the model (fine-tuning mode, SyncBN, device, memory
    format) as ``cfg`` says. Seed before calling: the initial weights are drawn here."""
    if not cfg.data:
        raise MomentlensError("--data DATA_DIR is required")
    train_split = load_training_split(cfg.data, cfg.train_split, cfg.layout, cfg.split_id)
    val_split = load_split(cfg.data, cfg.val_split, cfg.layout, split_id=cfg.split_id)
    model = build_model(cfg, len(train_split.classes))
    set_finetune(model, cfg.finetune)
    if cfg.sync_bn and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        # 2D models hold 4D conv weights (channels_last); their (B, C, T, H, W) input in
        # channels_last_3d reshapes to channels_last frames without a copy.
        model.to(memory_format=model.memory_format)
    spec = input_spec(cfg, model)
    return RunSetup(cfg, run_dir, train_split, val_split, model, spec,
                    model_meta(cfg, spec, train_split.classes, train_split.multi_label), device,
                    Normalizer(spec, channels_last=cfg.channels_last),
                    amp_dtype(cfg.amp, device), info)


# ----------------------------------------------------------------------------- optimisation


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    """SGD with momentum (the paper) or AdamW, at ``cfg.lr`` (the schedule's peak)."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


def warmup_steps(cfg: TrainConfig, steps_per_epoch: int) -> int:
    """Optimiser steps of the linear warm-up: ``warmup_epochs`` rounded up to whole steps
    (a fraction of a step would otherwise start above ``lr``)."""
    return math.ceil(cfg.warmup_epochs * steps_per_epoch - 1e-9)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer,
                   steps_per_epoch: int) -> lr_scheduler.LRScheduler:
    """The per-step schedule; call ``step()`` after every ``optimizer.step()``.

    Step s (0-based) trains at ``lr * (s + 1) / W`` during a warm-up of W steps, then:
    ``cosine`` falls to 0 over the remaining steps; ``step`` multiplies by ``gamma``
    every ``step_size`` epochs counted from the start (warm-up included); ``none`` and
    ``plateau`` stay at ``lr`` (``plateau`` lowers it per validation, see
    :func:`make_plateau`). These are the values of the closed-form schedule this
    replaced, except that a warm-up ending inside a step no longer goes above ``lr``.
    """
    warm_n = warmup_steps(cfg, steps_per_epoch)
    if cfg.schedule == "cosine":
        cosine = lr_scheduler.CosineAnnealingLR(
            optimizer, T_max=max(cfg.epochs * steps_per_epoch - warm_n, 1))
        if warm_n == 0:
            return cosine
        return lr_scheduler.SequentialLR(optimizer, [_warmup(optimizer, warm_n), cosine],
                                         milestones=[warm_n])
    warm = _warmup(optimizer, warm_n)
    if cfg.schedule == "step":
        decay = lr_scheduler.StepLR(optimizer, step_size=cfg.step_size * steps_per_epoch,
                                    gamma=cfg.gamma)
        # Both run every step and multiply: the decays count from step 0, as before.
        return lr_scheduler.ChainedScheduler([warm, decay], optimizer=optimizer)
    return warm


def _warmup(optimizer: torch.optim.Optimizer, steps: int) -> lr_scheduler.LinearLR:
    # Factors 1/W, 2/W, ..., 1 over W steps, then 1; W <= 1 is the identity.
    return lr_scheduler.LinearLR(optimizer, start_factor=1.0 / max(steps, 1), end_factor=1.0,
                                 total_iters=max(steps - 1, 0))


def make_plateau(cfg: TrainConfig, optimizer: torch.optim.Optimizer
                 ) -> lr_scheduler.ReduceLROnPlateau | None:
    """For ``schedule=plateau``: multiply the lr by ``gamma`` when validation top-1 has not
    risen by more than 1e-6 for more than ``plateau_patience`` validations; else ``None``.
    Call ``step(val_top1)`` after each validation."""
    if cfg.schedule != "plateau":
        return None
    return lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=cfg.gamma,
                                          patience=cfg.plateau_patience, threshold=1e-6,
                                          threshold_mode="abs")
