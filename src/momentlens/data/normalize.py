"""Normalisation: uint8 pixels on the device -> the model's float input.

A preset (:data:`NORM_PRESETS`) names the mean and std a model's weights were trained
with, and the range its pixels were on. Normalising is one multiply-add per pixel,
``x * a - b`` with per-channel ``a``, ``b`` from :func:`normalize_affine`; the training
loop keeps ``a`` and ``b`` on the device (:mod:`momentlens.engine.prefetch`), evaluation
calls :func:`normalize`. Both give the same numbers, bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class NormPreset:
    """``(x / 255 - mean) / std`` when ``value_scale == 1`` (pixels on [0, 1]),
    ``(x - mean) / std`` when ``value_scale == 255`` (pixels on [0, 255])."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_scale: int


NORM_PRESETS: dict[str, NormPreset] = {
    # torchvision / timm ImageNet weights
    "imagenet": NormPreset((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 1),
    # 3D-ResNets-PyTorch (2017 code) means on [0, 255], no std
    "kinetics_255": NormPreset((110.63666788, 103.16065604, 96.29023126), (1.0, 1.0, 1.0), 255),
    "activitynet_255": NormPreset((114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0), 255),
    # 3D-ResNets-PyTorch (2020 code, mean.py) mean/std on [0, 1]
    "kinetics_01": NormPreset((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737), 1),
    "activitynet_01": NormPreset((0.4477, 0.4209, 0.3906), (0.2767, 0.2695, 0.2714), 1),
    # torchvision's Kinetics-400 video models (r3d_18, mc3_18, r2plus1d_18) on [0, 1]
    "kinetics_tv": NormPreset((0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989), 1),
    # plain [0, 1] pixels
    "none": NormPreset((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 1),
    # the paper: subtract the dataset's own mean (``momentlens stats``), pass mean=...
    "dataset": NormPreset((0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 255),
}


def normalize_affine(preset: str, mean: Sequence[float] | None = None,
                     std: Sequence[float] | None = None, ndim: int = 5
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(a, b)`` float32 ``(1, 3, 1, ...)`` (``ndim`` dimensions) on the CPU such that
    ``x * a - b`` normalises a uint8 batch ``x``: ``(x * vs / 255 - m) / s`` folded into
    ``a = vs / (255 s)``, ``b = m / s``. ``mean`` / ``std`` override the preset's, in its
    units (``[0, 255]`` for ``*_255`` and ``dataset``, ``[0, 1]`` otherwise)."""
    import torch

    if preset not in NORM_PRESETS:
        raise ValueError(f"unknown normalisation preset {preset!r}; choose from "
                         f"{', '.join(NORM_PRESETS)}")
    if preset == "dataset" and mean is None:
        raise ValueError("preset 'dataset' needs mean= (per-channel, on [0, 255])")
    p = NORM_PRESETS[preset]
    m = torch.tensor(mean if mean is not None else p.mean, dtype=torch.float32)
    s = torch.tensor(std if std is not None else p.std, dtype=torch.float32)
    shape = (1, 3) + (1,) * (ndim - 2)
    return (p.value_scale / (255.0 * s)).view(shape), (m / s).view(shape)


def normalize(x: torch.Tensor, preset: str = "imagenet", mean: Sequence[float] | None = None,
              std: Sequence[float] | None = None) -> torch.Tensor:
    """uint8 pixels -> float32 normalised input, on ``x``'s device.

    ``x``: torch ``uint8`` tensor with channels (RGB) in dimension 1: ``(B, C, T, H, W)``
    or ``(B, C, H, W)``. ``preset``: a key of :data:`NORM_PRESETS`; ``mean`` / ``std`` as
    in :func:`normalize_affine`; ``preset="dataset"`` requires ``mean`` (from
    ``momentlens stats``, the ``mean_255`` values).
    """
    import torch

    if x.ndim not in (4, 5) or x.shape[1] != 3:
        raise ValueError(f"expected (B, 3, T, H, W) or (B, 3, H, W), got {tuple(x.shape)}")
    a, b = _affine_on(preset, _key(mean), _key(std), x.ndim, x.device)
    if a is None:  # a scale of exactly 1 (the *_255 presets): x * 1.0 is x, bit for bit
        return x.to(torch.float32) - b
    return x.to(torch.float32) * a - b


def _key(values: Sequence[float] | None) -> tuple[float, ...] | None:
    return None if values is None else tuple(float(v) for v in values)


@functools.lru_cache(maxsize=64)
def _affine_on(preset: str, mean: tuple[float, ...] | None, std: tuple[float, ...] | None,
               ndim: int, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor]:
    # Made and copied to the device once per (preset, mean, std, layout, device), not
    # per batch: on CUDA each copy of a small host tensor is a synchronous transfer.
    # ``a`` is None where every channel's scale is exactly 1 (no multiply needed).
    import torch

    with torch.inference_mode(False):  # usable both inside and outside inference_mode
        a, b = normalize_affine(preset, mean, std, ndim)
        return (None if bool((a == 1).all()) else a.to(device)), b.to(device)
