"""Class activation maps (Zhou et al., CVPR 2016) of a clip tensor, for any model.

Every momentlens model ends in ``forward_features`` -> global average pool -> one
``nn.Linear`` (see :mod:`momentlens.models.base`), so the map of class ``c`` needs no
layer names: with features ``f`` of shape ``(C, T', H', W')`` and classifier weights
``w = classifier.weight[c]`` ``(C,)``,

    ``cam[t, y, x] = sum_k w[k] * f[k, t, y, x]``        (no bias, as Zhou et al.)

and the logit is ``cam.mean() + bias[c]``: the map is exactly how the logit is spread
over time slices and positions. 3D models give ``T' < T`` time slices, 2D models one
map per sampled frame (``T' = T``); the same code serves both. Maps of a whole video
file (views, sliding windows, the source pixel grid) are :mod:`momentlens.cam.video`.

Alignment. A map is upsampled by linear interpolation on the *receptive-field grid*:
along an axis that the trunk downsamples by ``s`` (a power of two), cell ``i`` is centred
on input index ``s * i``, because every strided layer of these ResNets is an odd,
"same"-padded kernel whose output ``j`` is centred on input ``2 j``. So input index ``p``
reads the map at cell coordinate ``p / s`` (clamped to ``[0, n - 1]``). The usual
centre-aligned resize (``align_corners=False``) would put cell ``i`` at ``s * i +
(s - 1) / 2`` instead: half a cell too far right and down (7.5 pixels at stride 16),
which we measured as a visible offset of the peaks from the objects. In time, the last
slice still lands on the last frames.

Class evidence over time: ``evidence[t]`` is the class score of the time slice at
frame ``t`` before temporal pooling, ``mean_{y,x} cam[t] + bias[c]`` (linearly
interpolated between slice centres like the maps); its mean over the ``T'`` slices is
the logit.

Grad-CAM (:func:`grad_cam`) is offered for comparison. For this head (average pool,
then linear) the gradient of logit ``c`` with respect to ``f[k, t, y, x]`` is
``w[k] / (T' H' W')`` everywhere, so Grad-CAM's channel weights are ``w / (T' H' W')``
and Grad-CAM equals ``relu(cam) / (T' H' W')``: same ranking of positions, negative
evidence clipped. It is computed through autograd, so it remains a real check.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def cam_forward(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass: normalised clip ``(B, 3, T, H, W)`` -> ``(logits (B, N), features
    (B, C, T', H', W'))``. Gradients follow the caller's ``torch.no_grad`` setting."""
    features = model.forward_features(x)
    return model.forward_head(features), features


def _class_weights(model: nn.Module, class_idx: int | Sequence[int] | torch.Tensor,
                   batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    fc = model.classifier
    idx = torch.as_tensor(class_idx, dtype=torch.long, device=fc.weight.device).reshape(-1)
    if idx.numel() == 1:
        idx = idx.expand(batch)
    if idx.numel() != batch:
        raise ValueError(f"class_idx has {idx.numel()} entries for a batch of {batch}")
    if idx.min() < 0 or idx.max() >= fc.out_features:
        raise ValueError(f"class index outside 0..{fc.out_features - 1}: {idx.tolist()}")
    bias = fc.bias[idx] if fc.bias is not None else torch.zeros(batch, device=fc.weight.device)
    return fc.weight[idx].to(device), bias.to(device)


def _network_stride(in_size: int, out_size: int) -> int:
    """Total stride of the trunk along one axis: a power of two (1 when not downsampled)."""
    if out_size >= in_size:
        return 1
    return 2 ** max(0, round(math.log2(in_size / out_size)))


def _resample_axis(x: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``dim`` onto ``size`` points at cell coordinates
    ``p / s`` (the receptive-field grid, module doc)."""
    n = x.shape[dim]
    if n == size:
        return x
    s = _network_stride(size, n)
    u = (torch.arange(size, dtype=torch.float32, device=x.device) / s).clamp(0, n - 1)
    lo = u.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (u - lo.float()).reshape([-1 if d == dim else 1 for d in range(x.ndim)])
    return x.index_select(dim, lo) * (1 - w) + x.index_select(dim, hi) * w


def _upsample(maps: torch.Tensor, out_thw: Sequence[int | None] | None) -> torch.Tensor:
    """``(B, T', H', W')`` -> ``(B, T, H, W)`` on the receptive-field grid (module doc);
    ``None`` entries keep that axis as it is."""
    if out_thw is None:
        return maps
    out = maps.float()
    for axis, size in enumerate(out_thw, start=1):
        if size is not None:
            out = _resample_axis(out, axis, int(size))
    return out


def cam_from_features(model: nn.Module, features: torch.Tensor,
                      class_idx: int | Sequence[int] | torch.Tensor,
                      out_thw: Sequence[int | None] | None = None) -> torch.Tensor:
    """Class activation maps from features ``(B, C, T', H', W')``.

    ``class_idx``: one class for the whole batch or one per item ``(B,)``.
    ``out_thw``: ``(T, H, W)`` to upsample to (on the receptive-field grid, module doc); ``None``
    keeps the feature resolution, a ``None`` entry keeps that axis.
    Returns float32 ``(B, T, H, W)`` in logit units, without the bias.
    """
    w, _ = _class_weights(model, class_idx, features.shape[0], features.device)
    maps = torch.einsum("bc,bcthw->bthw", w.to(features.dtype), features).float()
    return _upsample(maps, out_thw)


def temporal_evidence(model: nn.Module, features: torch.Tensor,
                      class_idx: int | Sequence[int] | torch.Tensor,
                      num_frames: int | None = None) -> torch.Tensor:
    """Class score per time slice before temporal pooling: ``(B, T')``, or ``(B, T)``
    linearly interpolated (as the maps, module doc) when ``num_frames = T`` is given. The mean
    over the ``T'`` slices is the logit."""
    w, b = _class_weights(model, class_idx, features.shape[0], features.device)
    slices = torch.einsum("bc,bct->bt", w.to(features.dtype),
                          features.mean(dim=(3, 4))).float() + b[:, None].float()
    if num_frames is None or num_frames == slices.shape[1]:
        return slices
    return _resample_axis(slices, 1, int(num_frames))


def class_activation_maps(model: nn.Module, x: torch.Tensor,
                          class_idx: int | Sequence[int] | torch.Tensor | None = None
                          ) -> torch.Tensor:
    """CAM of a normalised clip ``(B, 3, T, H, W)`` -> float32 ``(B, T, H, W)``, aligned
    with the input frames and pixels. ``class_idx=None`` maps each item's top-1 class."""
    with torch.no_grad():
        logits, features = cam_forward(model, x)
        if class_idx is None:
            class_idx = logits.argmax(dim=1)
        return cam_from_features(model, features, class_idx, out_thw=x.shape[2:])


def grad_cam(model: nn.Module, x: torch.Tensor,
             class_idx: int | Sequence[int] | torch.Tensor | None = None,
             out_thw: Sequence[int | None] | None = None) -> torch.Tensor:
    """Grad-CAM on the last convolutional map, through autograd: ``(B, T, H, W)``.

    Channel weights are the gradients of the class logit averaged over ``(T', H', W')``;
    the map is ``relu(sum_k weight_k * f_k)``. ``out_thw`` defaults to the input's
    ``(T, H, W)``. See the module doc for how it relates to :func:`cam_from_features`.
    """
    with torch.enable_grad():
        features = model.forward_features(x).detach().requires_grad_(True)
        logits = model.forward_head(features)
        if class_idx is None:
            class_idx = logits.argmax(dim=1)
        idx = torch.as_tensor(class_idx, device=logits.device).reshape(-1).expand(len(logits))
        score = logits.gather(1, idx[:, None]).sum()
        (grads,) = torch.autograd.grad(score, features)
    alpha = grads.mean(dim=(2, 3, 4))
    maps = torch.relu(torch.einsum("bc,bcthw->bthw", alpha, features.detach())).float()
    return _upsample(maps, x.shape[2:] if out_thw is None else out_thw)
