"""The LR schedule, built from ``torch.optim.lr_scheduler``: the values of the closed-form
schedule it replaced, no warm-up above ``lr``, an exact state round trip through a
checkpoint file, and checkpoints of older versions (a ``{factor, best, bad}`` schedule)
that still resume."""

from __future__ import annotations

import io
import math

import pytest
import torch

from momentlens.engine import checkpoint as ckpt
from momentlens.engine.config import TrainConfig
from momentlens.engine.factory import make_optimizer, make_plateau, make_scheduler

STEPS_PER_EPOCH = 7


def _closed_form(cfg: TrainConfig, step: int) -> float:
    """The hand-written schedule of earlier versions (exact for whole-step warm-ups)."""
    epoch = step / STEPS_PER_EPOCH
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        return cfg.lr * (step + 1) / (cfg.warmup_epochs * STEPS_PER_EPOCH)
    if cfg.schedule == "step":
        return cfg.lr * cfg.gamma ** int(epoch // cfg.step_size)
    if cfg.schedule == "cosine":
        progress = (epoch - cfg.warmup_epochs) / (cfg.epochs - cfg.warmup_epochs)
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))
    return cfg.lr


def _parts(cfg: TrainConfig) -> ckpt.Optimisation:
    model = torch.nn.Linear(2, 2)
    optimizer = make_optimizer(cfg, list(model.parameters()))
    return ckpt.Optimisation(optimizer, make_scheduler(cfg, optimizer, STEPS_PER_EPOCH),
                             make_plateau(cfg, optimizer))


def _lrs(opt: ckpt.Optimisation, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(opt.optimizer.param_groups[0]["lr"])
        opt.optimizer.step()
        opt.scheduler.step()
    return out


@pytest.mark.parametrize("schedule", ["none", "step", "cosine", "plateau"])
@pytest.mark.parametrize("warmup_epochs", [0, 1, 2, 3 / STEPS_PER_EPOCH])
def test_values_match_the_closed_form(schedule, warmup_epochs):
    cfg = TrainConfig(schedule=schedule, warmup_epochs=warmup_epochs, epochs=6, step_size=2,
                      gamma=0.5, lr=0.1)
    got = _lrs(_parts(cfg), cfg.epochs * STEPS_PER_EPOCH)
    want = [_closed_form(cfg, s) for s in range(cfg.epochs * STEPS_PER_EPOCH)]
    assert got == pytest.approx(want, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("warmup_epochs", [0.05, 0.1, 0.5, 1.5 / STEPS_PER_EPOCH])
@pytest.mark.parametrize("schedule", ["none", "cosine", "step"])
def test_a_warmup_ending_inside_a_step_never_exceeds_lr(schedule, warmup_epochs):
    # The closed form gave lr * 1 / 0.35 at step 0 for warmup_epochs=0.05 (0.35 steps).
    cfg = TrainConfig(schedule=schedule, warmup_epochs=warmup_epochs, epochs=3, lr=0.1)
    lrs = _lrs(_parts(cfg), cfg.epochs * STEPS_PER_EPOCH)
    assert max(lrs) <= cfg.lr


def test_plateau_lowers_lr_after_patience_validations_without_gain():
    cfg = TrainConfig(schedule="plateau", plateau_patience=1, gamma=0.5, lr=0.1)
    opt = _parts(cfg)
    seen = []
    for top1 in [0.2, 0.3, 0.3, 0.3, 0.3, 0.4, 0.4, 0.4]:
        opt.plateau.step(top1)
        seen.append(opt.optimizer.param_groups[0]["lr"])
    # 2 validations without gain (more than patience=1) halve the lr, then count again.
    assert seen == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025])


def test_state_round_trip_is_exact():
    cfg = TrainConfig(schedule="cosine", warmup_epochs=1, epochs=4, lr=0.1)
    reference = _lrs(_parts(cfg), 4 * STEPS_PER_EPOCH)
    first = _parts(cfg)
    head = _lrs(first, 10)
    buf = io.BytesIO()
    torch.save({"optimizer": first.optimizer.state_dict(),
                "scheduler": first.scheduler.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # what restore_training reads
    second = _parts(cfg)
    second.optimizer.load_state_dict(saved["optimizer"])
    second.scheduler.load_state_dict(saved["scheduler"])
    assert head + _lrs(second, 4 * STEPS_PER_EPOCH - 10) == reference  # bit for bit


def _save_old_style(run_dir, model, cfg: TrainConfig, step: int, lr: float,
                    schedule: dict) -> None:
    """A checkpoint as versions with the hand-written schedule wrote it."""
    optimizer = make_optimizer(cfg, list(model.parameters()))
    for group in optimizer.param_groups:
        group["lr"] = lr
    payload = {"epoch": step // STEPS_PER_EPOCH, "step": step, "batch_in_epoch": 0,
               "best_top1": 0.5, "best_epoch": 1, "history": "[]",
               "optimizer": optimizer.state_dict(), "schedule": schedule,
               "rng": ckpt.rng_state(), "config": "{}"}
    meta = {"model": "linear", "num_classes": 2, "options": {}, "classes": ["a", "b"],
            "input": {}}
    ckpt.save_checkpoint(run_dir, model, meta, payload)


@pytest.mark.parametrize("schedule", ["cosine", "plateau"])
def test_a_checkpoint_of_an_older_version_resumes_at_its_step(tmp_path, schedule):
    cfg = TrainConfig(schedule=schedule, warmup_epochs=1, epochs=4, lr=0.1)
    step = 2 * STEPS_PER_EPOCH + 3
    old = {"factor": 0.25, "best": 0.5, "bad": 1} if schedule == "plateau" else \
        {"factor": 1.0, "best": -math.inf, "bad": 0}
    model = torch.nn.Linear(2, 2)
    _save_old_style(tmp_path, model, cfg, step, _closed_form(cfg, step - 1), old)
    opt = _parts(cfg)
    state = ckpt.restore_training(tmp_path, torch.nn.Linear(2, 2), opt, cfg.to_dict())
    assert state.step == step and state.best_top1 == 0.5
    # The lr of the next step is the schedule's at that step, times the plateau factor.
    lr = opt.optimizer.param_groups[0]["lr"]
    assert lr == pytest.approx(_closed_form(cfg, step) * old["factor"], rel=1e-12)
    if schedule == "plateau":
        assert (opt.plateau.best, opt.plateau.num_bad_epochs) == (0.5, 1)
    # ... and it goes on from there as a scheduler that was never interrupted.
    rest = _lrs(opt, 4 * STEPS_PER_EPOCH - step)
    want = [_closed_form(cfg, s) * old["factor"] for s in range(step, 4 * STEPS_PER_EPOCH)]
    assert rest == pytest.approx(want, rel=1e-12, abs=1e-15)


def test_changed_schedule_settings_rebuild_the_scheduler_on_resume(tmp_path):
    # A run continued with more epochs gets the cosine of the longer run from the saved step.
    cfg = TrainConfig(schedule="cosine", warmup_epochs=1, epochs=4, lr=0.1)
    model = torch.nn.Linear(2, 2)
    opt = _parts(cfg)
    _lrs(opt, 10)
    meta = {"model": "linear", "num_classes": 2, "options": {}, "classes": ["a", "b"]}
    ckpt.save_training(tmp_path, model, meta, ckpt.TrainState(epoch=1, step=10), opt,
                       cfg.to_dict())
    longer = TrainConfig(schedule="cosine", warmup_epochs=1, epochs=8, lr=0.1)
    resumed = _parts(longer)
    state = ckpt.restore_training(tmp_path, torch.nn.Linear(2, 2), resumed, longer.to_dict())
    assert state.step == 10
    rest = _lrs(resumed, 8 * STEPS_PER_EPOCH - 10)
    want = [_closed_form(longer, s) for s in range(10, 8 * STEPS_PER_EPOCH)]
    assert rest == pytest.approx(want, rel=1e-12, abs=1e-15)
