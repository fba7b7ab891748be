"""Checkpoints that survive a crash at any moment, and self-describing model files.

A run folder holds::

    RUN_DIR/checkpoints/e0003-s0000120/model.safetensors   weights (+ JSON metadata)
    RUN_DIR/checkpoints/e0003-s0000120/state.pt            optimiser, schedule, RNG, counters
    RUN_DIR/checkpoints/last.txt                           name of the newest checkpoint
    RUN_DIR/checkpoints/best.txt                           name of the best one so far

A checkpoint folder is written under a temporary name, every file is fsync'ed, and the
folder is renamed into place; only then is the pointer file (``last.txt``) replaced,
atomically. A crash at any moment therefore leaves the previous pointer naming a
complete checkpoint. Folders no pointer names are removed afterwards.

``model.safetensors`` carries in its metadata the model name, its options, the class
names and the input record, so a single file is enough to rebuild the model for
``evaluate``, ``predict`` and ``cam``. Everything is read with ``weights_only=True`` /
safetensors: a checkpoint is untrusted input.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from momentlens.utils import MomentlensError, atomic_path, write_text_atomic

CKPT_DIR = "checkpoints"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_KEY = "momentlens"


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


# ----------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """The state of every random generator training may touch (weights_only-safe types)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": _python_state_to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _python_state_to_lists(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


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
    even when no pointer names it (``save_every``).
    """
    root = Path(run_dir) / CKPT_DIR
    root.mkdir(parents=True, exist_ok=True)
    name = checkpoint_name(int(state["epoch"]), int(state["step"]))
    final = root / name
    if not final.exists():
        tmp = root / f".tmp-{name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        save_model_file(tmp / MODEL_FILE, model, meta)
        torch.save(state, tmp / STATE_FILE)
        _fsync_file(tmp / STATE_FILE)
        _slow_write_hook()
        if keep:
            (tmp / "keep").touch()
        _fsync_dir(tmp)
        os.rename(tmp, final)
        _fsync_dir(root)
    elif keep:
        (final / "keep").touch()
    for tag in tags:
        write_text_atomic(root / f"{tag}.txt", name + "\n")
    _remove_unreferenced(root)
    return final


def _slow_write_hook() -> None:
    # Tests set this to widen the window in which a checkpoint is half-written, so that
    # a real SIGKILL can land inside it. It has no other use.
    delay = float(os.environ.get("MOMENTLENS_TEST_CHECKPOINT_DELAY", "0") or 0)
    if delay > 0:
        time.sleep(delay)


def _remove_unreferenced(root: Path) -> None:
    referenced = set()
    for pointer in root.glob("*.txt"):
        referenced.add(pointer.read_text().strip())
    for entry in root.iterdir():
        if not entry.is_dir():
            continue
        stale_tmp = entry.name.startswith(".tmp-")
        if stale_tmp or (entry.name not in referenced and not (entry / "keep").exists()):
            shutil.rmtree(entry, ignore_errors=True)


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
    from momentlens.models.registry import create_model
    from momentlens.models.spec import InputSpec

    file = resolve_model_path(path)
    tensors, meta = read_model_file(file)
    model = create_model(meta["model"], num_classes=int(meta["num_classes"]), **meta["options"])
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise MomentlensError(f"{file} does not match model {meta['model']!r}: {exc}") from None
    meta["path"] = str(file)
    # The run's own input record (overrides included) replaces the builder's default.
    model.input_spec = InputSpec.from_dict(meta["input"], str(file))
    return model.to(device).eval(), meta
