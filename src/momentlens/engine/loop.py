"""One training epoch with little overhead of its own: :func:`train_one_epoch`.

The loop never waits for the device between steps. Loss and accuracy are summed on the
device (:class:`Meter`) and read, in one copy, at most once per :data:`READ_EVERY_S`
seconds (the progress bar's rate), before each checkpoint and at the end of the epoch.
The NaN check rides on the same reads: each step adds a device-side flag (the first
step whose loss was not finite, and that loss), and a read that finds it set raises
:class:`TrainingDiverged`. Steps after the bad one may run before the read, but no
checkpoint is ever written past it: every save reads first, so the last checkpoint is
the last good one.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from momentlens.engine.checkpoint import TrainState
from momentlens.engine.config import TrainConfig
from momentlens.engine.distributed import DistInfo, all_reduce_sums
from momentlens.engine.inference import Normalizer
from momentlens.engine.prefetch import DeviceAugment, DeviceInput, Prefetcher
from momentlens.engine.runtime import autocast
from momentlens.engine.signals import StopRequest
from momentlens.utils import MomentlensError, progress

#: The longest time between two reads of the device-side sums (and bar updates).
READ_EVERY_S = 1.0


class TrainingDiverged(MomentlensError):
    """The loss became NaN or infinite."""


def save_due(cfg: TrainConfig, state: TrainState) -> bool:
    """Whether the step just taken ends with a checkpoint (``checkpoint_steps``)."""
    return bool(cfg.checkpoint_steps) and state.step % cfg.checkpoint_steps == 0


class Meter:
    """Loss, accuracy and time of an epoch so far: sums on the device, timers on the host."""

    SUMS = ("seen", "correct", "loss_sum", "wait", "busy")

    def __init__(self, world_size: int, device: torch.device,
                 sums: dict[str, float] | None = None) -> None:
        sums = sums or {}  # an epoch resumed part-way starts from its saved sums
        self.world_size = world_size
        self.seen = int(sums.get("seen", 0))
        self.wait, self.busy = float(sums.get("wait", 0.0)), float(sums.get("busy", 0.0))
        # float64: a resumed epoch's sums continue exactly from the saved Python floats.
        self.loss_sum = torch.tensor(float(sums.get("loss_sum", 0.0)), dtype=torch.float64,
                                     device=device)
        self.correct = torch.tensor(int(sums.get("correct", 0)), dtype=torch.int64, device=device)
        self.bad_step = torch.tensor(-1, dtype=torch.int64, device=device)
        self.bad_loss = torch.tensor(0.0, dtype=torch.float32, device=device)
        self.read_sums = {"loss_sum": float(sums.get("loss_sum", 0.0)),
                          "correct": float(sums.get("correct", 0))}
        self._mark = self._last_read = time.perf_counter()

    def data_ready(self) -> None:
        now = time.perf_counter()
        self.wait, self._mark = self.wait + now - self._mark, now

    def add(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
            step: int) -> None:
        """Queue this micro-batch's sums and finiteness check on the device (no sync)."""
        loss = loss.detach()
        first = ~torch.isfinite(loss) & (self.bad_step < 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_loss = torch.where(first, loss.float(), self.bad_loss)
        self.loss_sum += loss.double() * len(labels)
        self.correct += _correct(logits.detach(), labels)
        self.seen += len(labels)

    def batch_done(self) -> None:
        """The end of a batch's work on the host (forward, backward, step, any read)."""
        now = time.perf_counter()
        self.busy, self._mark = self.busy + now - self._mark, now

    def read_due(self) -> bool:
        return time.perf_counter() - self._last_read >= READ_EVERY_S

    def read(self, state: TrainState, cfg: TrainConfig) -> dict[str, float]:
        """Copy the sums to the host (one sync); raise if a loss was not finite. Returns
        and stores in ``state.epoch_sums`` what a checkpoint saves."""
        loss_sum, correct, bad_step, bad_loss = torch.stack([
            self.loss_sum, self.correct.double(), self.bad_step.double(),
            self.bad_loss.double()]).tolist()
        self._last_read = time.perf_counter()
        if bad_step >= 0:
            raise TrainingDiverged(
                f"the loss became {bad_loss} at step {int(bad_step)} (epoch "
                f"{state.epoch + 1}); stopped, the last good checkpoint is kept. Try a "
                f"lower --lr (now {cfg.lr}) or --set clip_grad=1.0")
        self.read_sums = {"loss_sum": loss_sum, "correct": correct}
        state.epoch_sums = self.sums()
        return self.read_sums

    def sums(self) -> dict[str, float]:
        """The sums as of the last :meth:`read` (checkpoint-ready Python numbers)."""
        return {"seen": self.seen, "correct": int(self.read_sums["correct"]),
                "loss_sum": self.read_sums["loss_sum"], "wait": self.wait, "busy": self.busy}

    def clips_per_s(self) -> float:  # all processes together
        return self.seen * self.world_size / max(self.wait + self.busy, 1e-9)

    def wait_share(self) -> float:
        return self.wait / max(self.wait + self.busy, 1e-9)


def train_one_epoch(
    model: nn.Module, loader: Any, optimizer: torch.optim.Optimizer, scheduler: LRScheduler,
    state: TrainState, cfg: TrainConfig, device: torch.device, normalizer: Normalizer,
    amp: torch.dtype | None, info: DistInfo, stop: StopRequest, on_step: Callable[[], None],
    augment: DeviceAugment | None = None,
) -> dict[str, float]:
    """One pass over ``loader`` (which already skips batches done before a resume).

    Batches are ``(clips uint8 (B, C, T, H, W), labels (B,) or multi-hot (B, K), indices)``; ``augment``
    crops and flips them on the device (``device_augment``). One optimiser step, then
    one ``scheduler`` step, every ``cfg.accum_steps`` batches; ``on_step`` after each
    (the device-side sums are read first when a checkpoint is due: :func:`save_due`).
    Returns the epoch's mean loss and top-1 (over all processes; a resumed epoch's
    include the batches before the resume: ``state.epoch_sums``), clips/s, the share of
    time spent waiting for data, and the last step's lr.
    """
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    meter = Meter(info.world_size, device, state.epoch_sums)
    lr = optimizer.param_groups[0]["lr"]
    prepare = DeviceInput(normalizer.spec, device, normalizer.channels_last, augment,
                          epoch=state.epoch)
    bar = _Bar(len(loader), f"epoch {state.epoch + 1}/{cfg.epochs}", info.is_main)
    done = 0
    for done, (x, y) in enumerate(Prefetcher(loader, prepare, device), 1):
        meter.data_ready()
        last_micro = state.batch_in_epoch % cfg.accum_steps == cfg.accum_steps - 1
        # DDP averages gradients only on the micro-batch that completes an accumulation.
        sync = model.no_sync() if (info.enabled and not last_micro) else contextlib.nullcontext()
        with sync:
            logits, loss = _forward_backward(model, x, y, cfg, device, amp)
        meter.add(loss, logits, y, state.step)
        state.batch_in_epoch += 1
        if last_micro:
            lr = _optimizer_step(optimizer, scheduler, trainable, cfg.clip_grad)
            state.step += 1
        if meter.read_due() or (last_micro and save_due(cfg, state)):
            bar.show(meter, meter.read(state, cfg), done)
        meter.batch_done()
        if last_micro:
            on_step()
            if stop.agreed(info):
                break
    sums = meter.read(state, cfg)
    bar.close(done)
    # The epoch's clips pooled over the ranks: after a resume on another number of
    # processes, rank 0 carries the sums saved before it, so the ranks' counts differ.
    loss_sum, correct, seen = all_reduce_sums(
        [sums["loss_sum"], sums["correct"], float(meter.seen)], info)
    seen = max(seen, 1.0)
    return {
        "train_loss": loss_sum / seen,
        "train_top1": correct / seen,
        "clips_per_s": meter.clips_per_s(),
        "data_wait": meter.wait_share(),
        "lr": lr,
    }


class _Bar:
    """The epoch's progress bar, moved only when the sums are read (a bounded rate)."""

    def __init__(self, total: int, desc: str, is_main: bool) -> None:
        self.bar: Any = progress(None, total=total, desc=desc, unit="batch",  # type: ignore
                                 disable=None if is_main else True)
        self.shown = 0

    def show(self, meter: Meter, sums: dict[str, float], done: int) -> None:
        """Postfix from the sums just read; ``done`` batches of this pass so far."""
        if hasattr(self.bar, "set_postfix"):
            self.bar.set_postfix(loss=f"{sums['loss_sum'] / max(meter.seen, 1):.3f}",
                                 clips_s=f"{meter.clips_per_s():.1f}",
                                 wait=f"{meter.wait_share():.0%}", refresh=False)
        self.close(done, final=False)

    def close(self, done: int, final: bool = True) -> None:
        if hasattr(self.bar, "update") and done > self.shown:
            self.bar.update(done - self.shown)
            self.shown = done
        if final and hasattr(self.bar, "close"):
            self.bar.close()


def _correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Videos whose top-1 class is their label (multi-hot ``(B, K)`` labels: one of
    their labels), summed on the device."""
    top1 = logits.argmax(1)
    if labels.ndim == 2:
        return (labels.gather(1, top1[:, None])[:, 0] > 0).sum()
    return (top1 == labels).sum()


def loss_fn(logits: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """The training loss of float ``logits (B, K)`` against class indices ``y (B,)`` or
    multi-hot targets ``y (B, K)`` (multi-label data), as ``cfg.resolved_loss`` says.

    ``bce``: binary cross-entropy with logits, mean over videos and classes; single-label
    targets become one-hot; label smoothing moves targets to ``t (1 - e) + e / 2``.
    ``ce``: softmax cross-entropy; multi-hot targets become the distribution spreading a
    video's mass evenly over its labels."""
    multi = y.ndim == 2
    if cfg.resolved_loss(multi) == "bce":
        target = y.float() if multi else F.one_hot(y, logits.shape[1]).float()
        if cfg.label_smoothing:
            target = target * (1 - cfg.label_smoothing) + cfg.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, target)
    if multi:
        y = y.float() / y.float().sum(1, keepdim=True).clamp_min(1)
    return F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)


def _forward_backward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig,
                      device: torch.device, amp: torch.dtype | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(logits (B, K), loss)`` of one micro-batch; its gradients are added to ``.grad``."""
    with autocast(device, amp):
        logits = model(x)
    loss = loss_fn(logits.float(), y, cfg)
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
