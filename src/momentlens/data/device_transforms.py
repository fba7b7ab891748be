"""Augmentation of a uint8 batch on the device (``device_augment``).

With device-side augmentation the loader's workers only decode, sample frames and resize
(to a ``resize x resize`` square: the short side to ``resize``, the long side centre
cropped), and the training loop crops, flips and normalises the whole batch where the
model runs. Pure functions on torch ``uint8 (B, C, T, H, W)`` batches; nothing here
reads files or keeps state.

Randomness: the crop offsets and the flip of item ``index`` in ``epoch`` are a hash of
``(seed, epoch, index)`` (:func:`crop_flip_params`, splitmix64 in numpy on the host), so
they do not depend on which batch, worker, process or device an item lands in, and a
resumed run draws what the uninterrupted one drew.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
# One stream per draw, so crop rows, crop columns and the flip are independent.
_STREAMS = (np.uint64(0xA0761D6478BD642F), np.uint64(0xE7037ED1A0B428DB),
            np.uint64(0x8EBC6AF09C88C6E3))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on ``uint64`` arrays (wrapping arithmetic)."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def item_hashes(seed: int, epoch: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """``uint64 (B, 3)``: three independent hashes of ``(seed, epoch, index)`` per item."""
    idx = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _mix(np.uint64(seed & (2**64 - 1)) + _GOLDEN)
        key = _mix(key ^ (np.uint64(epoch & (2**64 - 1)) + _GOLDEN))
        key = _mix(key ^ (idx + _GOLDEN))
        return np.stack([_mix(key ^ s) for s in _STREAMS], axis=1)


def crop_flip_params(seed: int, epoch: int, indices: Sequence[int] | np.ndarray,
                     src_hw: tuple[int, int], size: int, random_crop: bool = True,
                     flip_p: float = 0.5) -> np.ndarray:
    """``int64 (B, 3)``: per item the crop's top row, left column and flip (0 or 1).

    The crop is a ``size x size`` square of a ``src_hw`` frame, uniformly placed (or
    centred when not ``random_crop``, as ``ClipTransform``'s centre crop: rounding
    to the top-left); the flip happens with probability ``flip_p``."""
    h, w = src_hw
    if h < size or w < size:
        raise ValueError(f"batch {h}x{w} is smaller than the crop {size}")
    hashes = item_hashes(seed, epoch, indices)
    out = np.empty(hashes.shape, dtype=np.int64)
    if random_crop:
        out[:, 0] = (hashes[:, 0] % np.uint64(h - size + 1)).astype(np.int64)
        out[:, 1] = (hashes[:, 1] % np.uint64(w - size + 1)).astype(np.int64)
    else:
        out[:, 0], out[:, 1] = (h - size) // 2, (w - size) // 2
    uniform = (hashes[:, 2] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    out[:, 2] = uniform < flip_p
    return out


def crop_flip(batch: torch.Tensor, params: torch.Tensor, size: int) -> torch.Tensor:
    """Crop ``size x size`` at ``params[:, :2]`` (top, left) and mirror left-right the
    items with ``params[:, 2] == 1``: ``(B, C, T, H, W) -> (B, C, T, size, size)``, one
    gather on ``batch``'s device (``params``: int64 ``(B, 3)`` there too)."""
    import torch

    if batch.ndim != 5:
        raise ValueError(f"expected (B, C, T, H, W), got {tuple(batch.shape)}")
    ar = torch.arange(size, device=batch.device)
    rows = params[:, 0:1] + ar  # (B, size)
    cols = params[:, 1:2] + torch.where(params[:, 2:3].bool(), size - 1 - ar, ar)
    b = torch.arange(batch.shape[0], device=batch.device)[:, None, None]
    # (B, H, W, C, T) indexed by (b, row, col): (B, size, size, C, T).
    picked = batch.permute(0, 3, 4, 1, 2)[b, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 4, 1, 2).contiguous()
