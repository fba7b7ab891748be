"""Checkpoints that survive a crash at any moment, and self-describing model files.

A run folder holds::

    RUN_DIR/checkpoints/e0003-s0000120/model.safetensors   weights (+ JSON metadata)
    RUN_DIR/checkpoints/e0003-s0000120/state.pt            optimiser, LR scheduler, RNG, counters
    RUN_DIR/checkpoints/last.txt                           name of the newest checkpoint
    RUN_DIR/checkpoints/best.txt                           name of the best one so far
    RUN_DIR/checkpoints/previous.txt                       the 'last' before (a fallback)

A checkpoint folder is written under a temporary name, every file is fsync'ed, and the
folder is renamed into place; only then is the pointer file (``last.txt``) replaced,
atomically. A crash at any moment therefore leaves the previous pointer naming a
complete checkpoint. Folders this process wrote that no pointer names are removed
afterwards; what a dead process left is removed at the next start (``runlock.remove_orphans``,
under the run's lock). ``--resume`` falls back to the newest checkpoint that reads when
``last`` is damaged (:func:`readable_checkpoint`).

``model.safetensors`` carries in its metadata the model name, its options, the class
names and the input record, so a single file is enough to rebuild the model for
``evaluate``, ``predict`` and ``cam``. Everything is read with ``weights_only=True`` /
safetensors: a checkpoint is untrusted input.

:func:`save_training` / :func:`restore_training` put a whole training run (weights,
optimiser, LR scheduler, RNG, :class:`TrainState`) in such a folder and back.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim import lr_scheduler

from momentlens.engine.distributed import DistInfo, rank_share
from momentlens.engine.rng import rng_state, set_rng_state
from momentlens.engine.writes import writing
from momentlens.utils import MomentlensError, atomic_path, write_text_atomic

CKPT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_KEY = "momentlens"

log = logging.getLogger(__name__)


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------- model file


def save_model_file(path: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any]) -> None:
    """Write ``model``'s state dict as safetensors with ``meta`` (JSON) in its header."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={META_KEY: json.dumps(meta, sort_keys=True)})


def read_model_file(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by :func:`save_model_file`: ``(state_dict, meta)``."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise MomentlensError(f"model file {path} not found")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta_text = (fh.metadata() or {}).get(META_KEY)
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise MomentlensError(f"{path} is not a readable safetensors file: {exc}") from None
    if meta_text is None:
        raise MomentlensError(
            f"{path} has no momentlens metadata; to use external weights, build the model "
            "with --pretrained instead")
    return tensors, json.loads(meta_text)


# ----------------------------------------------------------------------------- checkpoints


def checkpoint_name(epoch: int, step: int) -> str:
    """Folder name of the checkpoint taken after ``epoch`` complete epochs and ``step`` steps."""
    return f"e{epoch:04d}-s{step:07d}"


def save_checkpoint(
    run_dir: str | os.PathLike[str],
    model: nn.Module,
    meta: dict[str, Any],
    state: dict[str, Any],
    tags: tuple[str, ...] = ("last",),
    keep: bool = False,
) -> Path:
    """Write a checkpoint folder atomically, then point each tag (``last``, ``best``) at it.

    ``state`` must hold ``epoch`` and ``step``. ``keep`` marks the folder to survive clean-up
    even when no pointer names it (``save_every``). The checkpoint ``last`` named before is
    kept as ``previous``, a fallback should the new one be damaged. A write that fails
    (a full disk) removes its temporary folder, leaves every pointer as it was and raises
    :class:`~momentlens.engine.writes.WriteFailed` naming the folder and the cause.
    """
    root = Path(run_dir) / CKPT_DIR
    with writing(root, "checkpoint folder"):
        root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(int(state["epoch"]), int(state["step"]))
    final = root / name
    if not final.exists():
        tmp = root / f".tmp-{name}-{os.getpid()}"
        try:
            with writing(final, "checkpoint"):
                _write_folder(tmp, model, meta, state, keep)
                os.rename(tmp, final)
                _fsync_dir(root)
        except Exception:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _WRITTEN.add(final)
    elif keep:
        (final / "keep").touch()
    _point(root, name, tags)
    remove_unreferenced(root, only=_WRITTEN)
    return final


#: Checkpoint folders this process wrote: the only ones its clean-up may remove.
_WRITTEN: set[Path] = set()
POINTERS = ("last", "best", "previous")


def _write_folder(tmp: Path, model: nn.Module, meta: dict[str, Any], state: dict[str, Any],
                  keep: bool) -> None:
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_model_file(tmp / MODEL_FILE, model, meta)
    torch.save(state, tmp / STATE_FILE)
    _fsync_file(tmp / STATE_FILE)
    if keep:
        (tmp / "keep").touch()
    _fsync_dir(tmp)


def _point(root: Path, name: str, tags: tuple[str, ...]) -> None:
    """Point each tag at ``name``; the ``last`` it replaces becomes ``previous``."""
    last = root / "last.txt"
    old = last.read_text().strip() if "last" in tags and last.is_file() else ""
    if old and old != name and (root / old).is_dir():
        with writing(root / "previous.txt"):
            write_text_atomic(root / "previous.txt", old + "\n")
    for tag in tags:
        with writing(root / f"{tag}.txt"):
            write_text_atomic(root / f"{tag}.txt", name + "\n")


def remove_unreferenced(root: Path, only: set[Path] | None = None) -> list[Path]:
    """Remove folders no pointer names (nor ``keep``) and this process's temporaries;
    ``only``: of the folders, just these (``None``: all temporaries too)."""
    referenced = set()
    for pointer in root.glob("*.txt"):
        referenced.add(pointer.read_text().strip())
    own_tmp = f"-{os.getpid()}"
    removed = []
    for entry in root.iterdir():
        if not entry.is_dir():
            continue
        if entry.name.startswith(".tmp-"):
            stale = entry.name.endswith(own_tmp) or only is None
        else:
            stale = (entry.name not in referenced and not (entry / "keep").exists()
                     and (only is None or entry in only))
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def find_checkpoint(run_dir: str | os.PathLike[str], tag: str = "last") -> Path | None:
    """The checkpoint folder ``tag`` points at, or ``None`` if the run has none yet."""
    root = Path(run_dir) / CKPT_DIR
    pointer = root / f"{tag}.txt"
    if not pointer.is_file():
        return None
    folder = root / pointer.read_text().strip()
    if not (folder / MODEL_FILE).is_file() or not (folder / STATE_FILE).is_file():
        raise MomentlensError(f"{pointer} names {folder.name}, which is incomplete or missing")
    return folder


def load_checkpoint(folder: str | os.PathLike[str]) -> tuple[dict, dict, dict]:
    """``(state_dict, meta, state)`` of a checkpoint folder."""
    folder = Path(folder)
    tensors, meta = read_model_file(folder / MODEL_FILE)
    try:
        state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is the same to a user
        raise MomentlensError(f"cannot read {folder / STATE_FILE}: {exc}") from None
    return tensors, meta, state


def resolve_model_path(path: str | os.PathLike[str]) -> Path:
    """A run folder (its best checkpoint, else its last), a checkpoint folder, or a file."""
    path = Path(path)
    if path.is_file():
        return path
    if (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    for tag in ("best", "last"):
        folder = find_checkpoint(path, tag) if path.is_dir() else None
        if folder is not None:
            return folder / MODEL_FILE
    raise MomentlensError(
        f"{path} is neither a model file nor a run folder with checkpoints/best.txt or last.txt")


def load_model(path: str | os.PathLike[str], device: str | torch.device = "cpu"
               ) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from a run folder, checkpoint folder or model file.

    Returns ``(model, meta)`` with the model in eval mode on ``device``; ``meta`` holds
    ``classes`` (output order) and ``input``, the run's input record, which is also
    ``model.input_spec``.
    """
    from momentlens.models.registry import create_model_with_state
    from momentlens.models.spec import InputSpec

    file = resolve_model_path(path)
    tensors, meta = read_model_file(file)
    try:  # built on the meta device, weights assigned: no random init thrown away
        model = create_model_with_state(meta["model"], int(meta["num_classes"]), tensors,
                                        **meta["options"])
    except RuntimeError as exc:
        raise MomentlensError(f"{file} does not match model {meta['model']!r}: {exc}") from None
    meta["path"] = str(file)
    # The run's own input record (overrides included) replaces the builder's default.
    model.input_spec = InputSpec.from_dict(meta["input"], str(file))
    return model.to(device).eval(), meta


# ----------------------------------------------------------------------------- training runs

#: Settings that shape the LR schedule: when one differs on ``--resume``, the scheduler
#: is rebuilt for the new settings instead of restored (a longer run gets a longer cosine).
SCHEDULE_SETTINGS = ("lr", "schedule", "warmup_epochs", "epochs", "step_size", "gamma",
                     "plateau_patience", "batch_size", "accum_steps", "max_steps_per_epoch")


@dataclass
class TrainState:
    """Where a run is; saved with every checkpoint."""

    epoch: int = 0  # completed epochs
    step: int = 0  # optimiser steps
    batch_in_epoch: int = 0  # micro-batches done in the current epoch
    best_top1: float = -1.0  # best validation top-1 so far, a fraction; -1 before any
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)  # rows of metrics.jsonl
    epoch_sums: dict[str, float] = field(default_factory=dict)  # the epoch's meter so far


@dataclass
class Optimisation:
    """The optimiser and its LR schedules: ``scheduler`` steps once per optimiser step,
    ``plateau`` (``schedule=plateau`` only) once per validation."""

    optimizer: torch.optim.Optimizer
    scheduler: lr_scheduler.LRScheduler
    plateau: lr_scheduler.ReduceLROnPlateau | None = None


def save_training(run_dir: str | os.PathLike[str], model: nn.Module, meta: dict[str, Any],
                  state: TrainState, opt: Optimisation, config: dict[str, Any],
                  tags: tuple[str, ...] = ("last",), keep: bool = False,
                  epoch_sums: list[dict[str, float]] | None = None) -> Path:
    """Checkpoint a training run: weights with ``meta``, plus everything
    :func:`restore_training` needs to continue it exactly (``config``: the run's settings;
    ``epoch_sums``: every rank's ``state.epoch_sums`` under several processes)."""
    payload = {
        "epoch": state.epoch, "step": state.step, "batch_in_epoch": state.batch_in_epoch,
        "best_top1": state.best_top1, "best_epoch": state.best_epoch,
        "history": json.dumps(state.history),
        "epoch_sums": json.dumps(epoch_sums or state.epoch_sums),
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "plateau": opt.plateau.state_dict() if opt.plateau is not None else None,
        "rng": rng_state(), "config": json.dumps(config),
    }
    return save_checkpoint(run_dir, model, {**meta, "epoch": state.epoch, "step": state.step},
                           payload, tags=tags, keep=keep)


def restore_training(run_dir: str | os.PathLike[str], model: nn.Module, opt: Optimisation,
                     config: dict[str, Any], info: DistInfo | None = None) -> TrainState | None:
    """Load the ``last`` checkpoint of ``run_dir`` into ``model`` and ``opt`` (both just
    built, the scheduler at step 0) and the RNGs; ``None`` when there is none yet. Under
    several processes (``info``), each rank gets its own sums of a part-done epoch.

    Checkpoints of older versions hold a hand-written schedule (``{factor, best, bad}``)
    instead of a scheduler state; for them, and when a setting of
    :data:`SCHEDULE_SETTINGS` changed, the scheduler is replayed to the saved step.
    """
    found = readable_checkpoint(run_dir)
    if found is None:
        return None
    weights, saved = found
    model.load_state_dict(weights)
    fresh = [(g["lr"], g.get("initial_lr", g["lr"])) for g in opt.optimizer.param_groups]
    opt.optimizer.load_state_dict(saved["optimizer"])
    state = TrainState(epoch=saved["epoch"], step=saved["step"],
                       batch_in_epoch=saved["batch_in_epoch"], best_top1=saved["best_top1"],
                       best_epoch=saved["best_epoch"], history=json.loads(saved["history"]),
                       epoch_sums=rank_share(json.loads(saved.get("epoch_sums", "{}")),
                                             info or DistInfo()))
    before = json.loads(saved.get("config", "{}"))
    changed = [k for k in SCHEDULE_SETTINGS if k in before and before[k] != config.get(k)]
    if "scheduler" in saved and not changed:
        opt.scheduler.load_state_dict(saved["scheduler"])
        if opt.plateau is not None and saved["plateau"] is not None:
            opt.plateau.load_state_dict(saved["plateau"])
    else:
        _replay_schedule(opt, fresh, state.step, saved)
        why = [f"changed: {', '.join(changed)}"] if changed else []
        why += [] if "scheduler" in saved else ["a checkpoint of an older version"]
        log.info("LR schedule rebuilt at step %d (%s)", state.step, "; ".join(why))
    set_rng_state(saved["rng"])
    return state


def readable_checkpoint(run_dir: str | os.PathLike[str]) -> tuple[dict, dict] | None:
    """``(state_dict, state)`` of the newest checkpoint of ``run_dir`` that reads: ``last``,
    else (saying why, and which one is used instead) the newest other folder (``previous``,
    ``best``, kept ones). ``None`` when the run has no checkpoint at all; an error, never
    a silent fresh start, when it has some but none reads."""
    root = Path(run_dir) / CKPT_DIR
    pointer = root / "last.txt"
    last = pointer.read_text().strip() if pointer.is_file() else ""
    folders = sorted((p.name for p in root.iterdir() if p.is_dir() and p.name[0] != "."),
                     reverse=True) if root.is_dir() else []
    if not last and not folders:
        return None
    problems = [] if last else [f"{pointer} is missing"]
    for name in ([last] if last else []) + [f for f in folders if f != last]:
        try:
            tensors, _, state = load_checkpoint(root / name)
        except MomentlensError as exc:
            problems.append(f"{name}: {exc}")
            continue
        if problems:
            log.warning("checkpoint 'last' of %s cannot be used (%s); resuming from %s, the "
                        "newest checkpoint that reads", run_dir, "; ".join(problems), name)
        return tensors, state
    raise MomentlensError(f"no checkpoint of {run_dir} can be read ({'; '.join(problems)}); "
                          "start the run again with --overwrite")


def _replay_schedule(opt: Optimisation, fresh: list[tuple[float, float]], steps: int,
                     saved: dict[str, Any]) -> None:
    # Back to the step-0 lr the new scheduler set, then step it as training would have.
    for group, (lr, initial) in zip(opt.optimizer.param_groups, fresh):
        group["lr"], group["initial_lr"] = lr, initial
    with warnings.catch_warnings():
        # "lr_scheduler.step() before optimizer.step()": no optimiser step belongs here.
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(steps):
            opt.scheduler.step()
    old = saved.get("schedule")  # older checkpoints: {factor, best, bad} of the plateau
    if old is not None:
        for group in opt.optimizer.param_groups:
            group["lr"] *= float(old["factor"])
    plateau = saved.get("plateau") or {}
    if opt.plateau is not None and (old or plateau):
        # The counters carry over; the settings (gamma, patience) are the current ones.
        opt.plateau.best = float(old["best"] if old else plateau["best"])
        opt.plateau.num_bad_epochs = int(old["bad"] if old else plateau["num_bad_epochs"])
