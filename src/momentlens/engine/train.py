"""``momentlens train``: the training loop, validation, checkpoints and resumption.

``train_one_epoch`` and ``validate`` are top-level functions; :func:`run` wires data,
model, optimiser and checkpoints together. The same code runs in one process or under
``torchrun`` (DistributedDataParallel; logging and checkpoints on rank 0 only).

Exact resumption: item randomness depends only on ``(seed, epoch, index)``, the batch
order only on ``(seed, epoch)``, and the learning rate only on the step, so a run
resumed from a checkpoint replays exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from momentlens.analysis import metrics as M
from momentlens.data.dataset import VideoDataset
from momentlens.data.layout import Split, load_split
from momentlens.engine import checkpoint as ckpt
from momentlens.engine.config import TrainConfig, config_from_dict, save_config
from momentlens.engine.distributed import DistInfo, EpochSampler, all_reduce_mean
from momentlens.engine.distributed import cleanup as dist_cleanup
from momentlens.engine.distributed import setup as dist_setup
from momentlens.engine.inference import Normalizer, make_loader, score_dataset
from momentlens.engine.runtime import (
    amp_dtype,
    autocast,
    environment,
    resolve_device,
    seed_everything,
)
from momentlens.engine.tbevents import EventWriter
from momentlens.models.base import set_finetune
from momentlens.models.registry import create_model
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError, progress, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)


class TrainingDiverged(MomentlensError):
    """The loss became NaN or infinite."""


# ----------------------------------------------------------------------------- pieces


#: Settings of the training config that are also model builder options.
BUILDER_SETTINGS = ("width", "frames", "size", "last_stride", "style")


def model_options(cfg: TrainConfig) -> dict[str, Any]:
    """The builder options a run's model is made with (also stored in its model files):
    the settings of :data:`BUILDER_SETTINGS` that the model's builder accepts."""
    from momentlens.models.registry import model_options as accepted

    allowed = set(accepted(cfg.model))
    return {k: getattr(cfg, k) for k in BUILDER_SETTINGS if k in allowed}


def build_model(cfg: TrainConfig, num_classes: int) -> nn.Module:
    model = create_model(cfg.model, num_classes=num_classes, **model_options(cfg))
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


def model_meta(cfg: TrainConfig, spec: InputSpec, classes: list[str]) -> dict[str, Any]:
    """What a model file must say for ``evaluate``/``predict``/``cam`` to rebuild and feed it."""
    return {
        "model": cfg.model,
        "num_classes": len(classes),
        "options": model_options(cfg),
        "classes": classes,
        "input": spec.to_dict(),
        "config": cfg.to_dict(),
    }


def make_dataset(cfg: TrainConfig, spec: InputSpec, split: Split, train: bool,
                 run_dir: Path | None, num_clips: int = 1) -> VideoDataset:
    return VideoDataset(
        split.records, num_classes=len(split.classes), **spec.dataset_options(),
        train=train, backend=cfg.backend, seed=cfg.seed,
        quarantine_path=(run_dir / "quarantine.jsonl") if run_dir else None,
        num_clips=num_clips,
    )


def make_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                           weight_decay=cfg.weight_decay)


@dataclass
class LRSchedule:
    """Learning rate as a function of the optimiser step (plus a plateau factor).

    ``none``/``step``/``cosine`` after an optional linear warm-up; ``plateau`` multiplies
    by ``gamma`` when validation top-1 has not improved for ``patience`` validations.
    Its state is three numbers, saved with every checkpoint.
    """

    cfg: TrainConfig
    steps_per_epoch: int
    factor: float = 1.0
    best: float = -math.inf
    bad: int = 0

    def lr(self, step: int) -> float:
        cfg, epoch = self.cfg, step / max(self.steps_per_epoch, 1)
        if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
            return cfg.lr * (step + 1) / (cfg.warmup_epochs * self.steps_per_epoch)
        base = cfg.lr
        if cfg.schedule == "step":
            base *= cfg.gamma ** int(epoch // cfg.step_size)
        elif cfg.schedule == "cosine":
            span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
            progress_ = min(max(epoch - cfg.warmup_epochs, 0.0) / span, 1.0)
            base *= 0.5 * (1 + math.cos(math.pi * progress_))
        return base * self.factor

    def observe(self, value: float) -> None:
        if self.cfg.schedule != "plateau":
            return
        if value > self.best + 1e-6:
            self.best, self.bad = value, 0
        else:
            self.bad += 1
            if self.bad > self.cfg.plateau_patience:
                self.factor *= self.cfg.gamma
                self.bad = 0

    def state_dict(self) -> dict[str, float]:
        return {"factor": self.factor, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, float]) -> None:
        self.factor, self.best, self.bad = state["factor"], state["best"], int(state["bad"])


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint and stops at a step end."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this step "
              "(again to abort)", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps
    batch_in_epoch: int = 0  # micro-batches done in the current epoch
    best_top1: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)


# ----------------------------------------------------------------------------- the loop


def train_one_epoch(
    model: nn.Module,
    loader: torch.utils.data.DataLoader,
    optimizer: torch.optim.Optimizer,
    schedule: LRSchedule,
    state: TrainState,
    cfg: TrainConfig,
    device: torch.device,
    normalizer: Normalizer,
    amp: torch.dtype | None,
    info: DistInfo,
    stop: StopRequest,
    on_step: Callable[[], None],
) -> dict[str, float]:
    """One pass over ``loader`` (which already skips batches done before a resume)."""
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    seen = correct = 0
    loss_sum = 0.0
    wait = busy = 0.0
    bar = progress(loader, total=len(loader), desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                   unit="batch", initial=0, disable=None if info.is_main else True)
    t_ready = time.perf_counter()
    for clips, labels, _ in bar:
        t_start = time.perf_counter()
        wait += t_start - t_ready
        x = normalizer(clips.to(device, non_blocking=True))
        y = labels.to(device, non_blocking=True)
        micro = state.batch_in_epoch % cfg.accum_steps
        last_micro = micro == cfg.accum_steps - 1
        sync = model.no_sync() if (info.enabled and not last_micro) else _null()
        with sync:
            with autocast(device, amp):
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"the loss became {loss.item()} at step {state.step} (epoch "
                    f"{state.epoch + 1}); stopped, the last good checkpoint is kept. Try a "
                    f"lower --lr (now {cfg.lr}) or --set clip_grad=1.0")
            (loss / cfg.accum_steps).backward()
        state.batch_in_epoch += 1
        if last_micro:
            if cfg.clip_grad:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.clip_grad)
            lr = schedule.lr(state.step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
        n = len(y)
        seen += n
        loss_sum += loss.item() * n
        correct += int((logits.argmax(1) == y).sum())
        t_ready = time.perf_counter()
        busy += t_ready - t_start
        if info.is_main and hasattr(bar, "set_postfix"):
            clips_s = seen * info.world_size / max(wait + busy, 1e-9)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", clips_s=f"{clips_s:.1f}",
                            wait=f"{wait / max(wait + busy, 1e-9):.0%}", refresh=False)
        if last_micro:
            on_step()
            if stop.signal is not None:
                break
    return {
        "train_loss": all_reduce_mean(loss_sum / max(seen, 1), info),
        "train_top1": all_reduce_mean(correct / max(seen, 1), info),
        "clips_per_s": seen * info.world_size / max(wait + busy, 1e-9),
        "data_wait": wait / max(wait + busy, 1e-9),
        "lr": optimizer.param_groups[0]["lr"],
    }


class _null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def validate(
    model: nn.Module, dataset: VideoDataset, cfg: TrainConfig, device: torch.device,
    normalizer: Normalizer, amp: torch.dtype | None, info: DistInfo, classes: list[str],
    epoch: int,
) -> dict[str, Any]:
    """Clip- and video-level top-1/top-5 on the validation split (unreadable videos left out)."""
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


def _restore(run_dir: Path) -> tuple[dict, dict, dict] | None:
    folder = ckpt.find_checkpoint(run_dir, "last")
    return ckpt.load_checkpoint(folder) if folder else None


def run(cfg: TrainConfig, resume: bool = False) -> dict[str, Any]:
    """Train as ``cfg`` says; with ``resume``, continue ``cfg.out`` from its last checkpoint."""
    if not cfg.out:
        raise MomentlensError("--out RUN_DIR is required")
    run_dir = Path(cfg.out)
    restored = None
    if resume:
        restored = _restore(run_dir)
        if restored is None:
            log.info("no checkpoint in %s yet: starting from scratch", run_dir)
    device = resolve_device(cfg.device)
    info = dist_setup(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    try:
        return _run(cfg, run_dir, restored, device, info)
    except torch.OutOfMemoryError:
        raise MomentlensError(
            f"out of memory on {device} with --batch-size {cfg.batch_size}; try "
            f"--batch-size {max(cfg.batch_size // 2, 1)} (with --set accum_steps="
            f"{cfg.accum_steps * 2} to keep the effective batch)") from None
    finally:
        dist_cleanup()


def _run(cfg: TrainConfig, run_dir: Path, restored: tuple | None, device: torch.device,
         info: DistInfo) -> dict[str, Any]:
    seed_everything(cfg.seed, cfg.deterministic)
    if not cfg.data:
        raise MomentlensError("--data DATA_DIR is required")
    train_split = load_split(cfg.data, cfg.train_split)
    val_split = load_split(cfg.data, cfg.val_split)
    classes = train_split.classes
    model = build_model(cfg, len(classes))
    set_finetune(model, cfg.finetune)
    if cfg.sync_bn and info.enabled:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model.to(device)
    if cfg.channels_last:
        # 2D models hold 4D conv weights (channels_last); their (B, C, T, H, W) input in
        # channels_last_3d reshapes to channels_last frames without a copy.
        model.to(memory_format=model.memory_format)
    amp = amp_dtype(cfg.amp, device)
    spec = input_spec(cfg, model)
    normalizer = Normalizer(spec, channels_last=cfg.channels_last)
    meta = model_meta(cfg, spec, classes)
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        write_json_atomic(run_dir / "input.json", spec.to_dict())
        write_json_atomic(run_dir / "env.json", environment(device))
    if cfg.cache_features:
        from momentlens.engine.feature_cache import train_head_on_cache

        return train_head_on_cache(cfg, model, spec, train_split, val_split, device,
                                   normalizer, amp, meta, run_dir, info)

    per_rank_batch = cfg.batch_size // info.world_size
    if per_rank_batch * info.world_size != cfg.batch_size:
        raise MomentlensError(f"--batch-size {cfg.batch_size} must divide by the number of "
                              f"processes ({info.world_size})")
    train_ds = make_dataset(cfg, spec, train_split, True, run_dir)
    val_ds = make_dataset(cfg, spec, val_split, False, run_dir, num_clips=cfg.val_clips)
    sampler = EpochSampler(len(train_ds), per_rank_batch, info, seed=cfg.seed,
                           max_batches=cfg.max_steps_per_epoch * cfg.accum_steps)
    steps_per_epoch = sampler.batches_per_epoch() // cfg.accum_steps
    if steps_per_epoch == 0:
        raise MomentlensError(
            f"the training split has {len(train_ds)} videos, fewer than one batch of "
            f"{cfg.batch_size * cfg.accum_steps}; lower --batch-size")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(cfg, params)
    schedule = LRSchedule(cfg, steps_per_epoch)
    state = TrainState()
    if restored is not None:
        weights, _, saved = restored
        model.load_state_dict(weights)
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["schedule"])
        state = TrainState(epoch=saved["epoch"], step=saved["step"],
                           batch_in_epoch=saved["batch_in_epoch"],
                           best_top1=saved["best_top1"], best_epoch=saved["best_epoch"],
                           history=json.loads(saved["history"]))
        ckpt.set_rng_state(saved["rng"])
        if info.is_main:
            print(f"resuming {run_dir} at epoch {state.epoch + 1}, step {state.step}",
                  file=sys.stderr)
    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        train_model = torch.compile(train_model)
    writer = EventWriter(run_dir / "tensorboard") if info.is_main else None

    def save(tags: tuple[str, ...], keep: bool = False) -> None:
        if not info.is_main:
            return
        payload = {
            "epoch": state.epoch, "step": state.step, "batch_in_epoch": state.batch_in_epoch,
            "best_top1": state.best_top1, "best_epoch": state.best_epoch,
            "history": json.dumps(state.history), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "rng": ckpt.rng_state(),
            "config": json.dumps(cfg.to_dict()),
        }
        ckpt.save_checkpoint(run_dir, model, {**meta, "epoch": state.epoch, "step": state.step},
                             payload, tags=tags, keep=keep)

    def on_step() -> None:
        if cfg.checkpoint_steps and state.step % cfg.checkpoint_steps == 0:
            save(("last",))

    if state.epoch == 0 and state.batch_in_epoch == 0 and restored is None:
        save(("last",))  # step 0: a resume before the first step starts from these weights
    result: dict[str, Any] = {}
    with StopRequest() as stop:
        while state.epoch < cfg.epochs:
            train_ds.set_epoch(state.epoch)
            sampler.set_epoch(state.epoch, start_batch=state.batch_in_epoch)
            loader = make_loader(train_ds, per_rank_batch, cfg.workers, sampler, device)
            t0 = time.perf_counter()
            stats = train_one_epoch(train_model, loader, optimizer, schedule, state, cfg,
                                    device, normalizer, amp, info, stop, on_step)
            if stop.signal is not None:
                save(("last",))
                if info.is_main:
                    print(f"stopped by {signal.Signals(stop.signal).name} at step {state.step}; "
                          f"continue with: momentlens train --resume {run_dir}", file=sys.stderr)
                return {"stopped": True, "step": state.step, "run_dir": str(run_dir)}
            state.epoch += 1
            state.batch_in_epoch = 0
            row: dict[str, Any] = {"epoch": state.epoch, "step": state.step, **stats,
                                   "epoch_seconds": round(time.perf_counter() - t0, 2)}
            last_epoch = state.epoch == cfg.epochs
            if (cfg.val_every and state.epoch % cfg.val_every == 0) or last_epoch:
                row.update(validate(model, val_ds, cfg, device, normalizer, amp, info, classes,
                                    state.epoch))
                schedule.observe(row["val_top1"])
            failed = len(train_ds.failed_indices(state.epoch - 1))
            row["train_unreadable"] = failed
            improved = "val_top1" in row and row["val_top1"] > state.best_top1
            if improved:
                state.best_top1, state.best_epoch = row["val_top1"], state.epoch
            state.history.append(row)
            keep = bool(cfg.save_every and state.epoch % cfg.save_every == 0)
            save(("last", "best") if improved else ("last",), keep=keep)
            if info.is_main:
                _log_epoch(row, cfg, run_dir, writer, failed, len(train_ds), state.history)
            result = row
    if writer:
        writer.close()
    return {**result, "best_top1": state.best_top1, "best_epoch": state.best_epoch,
            "run_dir": str(run_dir)}


def _log_epoch(row: dict[str, Any], cfg: TrainConfig, run_dir: Path, writer: EventWriter | None,
               failed: int, total: int, history: list[dict[str, Any]]) -> None:
    # Rewritten from the checkpointed history, so a resumed run never repeats or loses a row.
    write_text_atomic(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in history))
    if writer:
        for key, value in row.items():
            if isinstance(value, int | float) and key not in ("epoch", "step"):
                writer.add_scalar(key.replace("_", "/", 1), float(value), row["step"])
        writer.flush()
    line = (f"epoch {row['epoch']}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
            f"train top-1 {100 * row['train_top1']:.1f}%  lr {row['lr']:.2e}  "
            f"{row['clips_per_s']:.1f} clips/s  data wait {100 * row['data_wait']:.0f}%")
    if "val_top1" in row:
        line += (f"  | val top-1 {100 * row['val_top1']:.1f}%  top-5 {100 * row['val_top5']:.1f}%"
                 f"  clip top-1 {100 * row['val_clip_top1']:.1f}%")
    if failed:
        line += f"  | {failed} of {total} training videos unreadable (see quarantine.jsonl)"
    print(line, file=sys.stderr)


def config_of_run(run_dir: str | Path) -> TrainConfig:
    """The resolved settings a run folder was started with."""
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise MomentlensError(f"{path} not found: not a momentlens run folder")
    return config_from_dict(yaml.safe_load(path.read_text()), str(path))
