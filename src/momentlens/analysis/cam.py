"""Class activation maps (Zhou et al., CVPR 2016) over space and time, for any model.

Every momentlens model ends in ``forward_features`` -> global average pool -> one
``nn.Linear`` (see :mod:`momentlens.models.base`), so the map of class ``c`` needs no
layer names: with features ``f`` of shape ``(C, T', H', W')`` and classifier weights
``w = classifier.weight[c]`` ``(C,)``,

    ``cam[t, y, x] = sum_k w[k] * f[k, t, y, x]``        (no bias, as Zhou et al.)

and the logit is ``cam.mean() + bias[c]``: the map is exactly how the logit is spread
over time slices and positions. 3D models give ``T' < T`` time slices, 2D models one
map per sampled frame (``T' = T``); the same code serves both.

Alignment. A map is upsampled by linear interpolation on the *receptive-field grid*:
along an axis that the trunk downsamples by ``s`` (a power of two), cell ``i`` is centred
on input index ``s * i``, because every strided layer of these ResNets is an odd,
"same"-padded kernel whose output ``j`` is centred on input ``2 j``. So input index ``p``
reads the map at cell coordinate ``p / s`` (clamped to ``[0, n - 1]``). The usual
centre-aligned resize (``align_corners=False``) would put cell ``i`` at ``s * i +
(s - 1) / 2`` instead: half a cell too far right and down (7.5 pixels at stride 16),
which we measured as a visible offset of the peaks from the objects. In time, the last
slice still lands on the last frames. Maps go back to the source pixel grid with
:meth:`~momentlens.data.transforms.CropGeometry.uncrop`.

Whole videos (``sliding=True``): a 3D model's last map has few time slices (one for 16
frames), too coarse to follow a moving object. The map of frame ``f`` is then taken from
the model's view *centred on* ``f`` (the frames ``f + stride * (k - T // 2)``; for 2D
models simply frame ``f``), at the time position of ``f``; all views go through the model
in one batch. This is how ``evaluate --cam`` scores localisation.

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
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

# ----------------------------------------------------------------------------- tensors


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
    ``out_thw``: ``(T, H, W)`` to upsample to (centre-aligned, module doc); ``None``
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


# ----------------------------------------------------------------------------- videos


@dataclass
class VideoCAM:
    """The class activation map of one class over the sampled frames of one video.

    heatmaps:      float32 ``(K, H_src, W_src)``, logit units, on the source pixel grid
                   (pixels outside the model's centre crop get the map's minimum).
    frame_indices: int64 ``(K,)`` 0-based source frame indices of the maps.
    frames:        uint8 ``(K, H_src, W_src, 3)`` the source frames (RGB).
    evidence:      float32 ``(K,)`` class score of the time slice at each frame (module doc).
    class_index / class_name: the mapped class; ``probs`` float32 ``(num_classes,)`` the
    softmax of the whole clip; ``classes`` the model's class names; ``fps`` of the source.
    """

    heatmaps: np.ndarray
    frame_indices: np.ndarray
    class_index: int
    class_name: str
    probs: np.ndarray
    frames: np.ndarray
    evidence: np.ndarray
    classes: list[str] = field(default_factory=list)
    fps: float = 0.0
    video: str = ""

    @property
    def predicted_index(self) -> int:
        return int(np.argmax(self.probs))

    @property
    def times(self) -> np.ndarray:
        """Seconds of each map's frame (frame index / fps; 0 if fps is unknown)."""
        return self.frame_indices / self.fps if self.fps > 0 else np.zeros(len(self.frame_indices))

    def topk(self, k: int = 5) -> list[tuple[str, float]]:
        order = np.argsort(-self.probs, kind="stable")[:k]
        return [(self.classes[i] if self.classes else str(i), float(self.probs[i])) for i in order]


def view_indices(meta: dict[str, Any], num_frames: int) -> np.ndarray:
    """Source frame indices ``(T,)`` of the model's single evaluation view of a video."""
    return InputSpec.from_dict(meta["input"]).view_indices(num_frames)


def class_index(meta: dict[str, Any], name: str | int) -> int:
    """Output index of class ``name`` (or an index, checked); an unknown name is an
    error that lists the model's classes."""
    classes = list(meta["classes"])
    if isinstance(name, (int, np.integer)):
        if not 0 <= int(name) < len(classes):
            raise MomentlensError(f"class index {name} outside 0..{len(classes) - 1}")
        return int(name)
    if name not in classes:
        raise MomentlensError(f"unknown class {name!r}; the model's classes: {', '.join(classes)}")
    return classes.index(name)


def _pick(num: int, k: int | None) -> np.ndarray:
    """``k`` positions spread evenly over ``0..num-1`` (all of them when ``k`` is None)."""
    if k is None or k >= num:
        return np.arange(num)
    if k < 1:
        raise MomentlensError(f"--frames must be at least 1, got {k}")
    return np.round(np.linspace(0, num - 1, k)).astype(np.int64)


def _sliding_views(meta: dict[str, Any], num_frames: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` frames spread over the whole video and, for each, the model's view centred
    on it: ``(centres (k,), views (k, T))``. 2D models (segment sampling) see the frame alone."""
    centres = np.round(np.linspace(0, num_frames - 1, k)).astype(np.int64)
    spec = InputSpec.from_dict(meta["input"])
    if spec.sampler == "segments":
        return centres, centres[:, None]
    t, stride = spec.frames, spec.stride
    offsets = stride * (np.arange(t) - t // 2)
    return centres, np.clip(centres[:, None] + offsets[None], 0, num_frames - 1)


def video_cams(model: nn.Module, meta: dict[str, Any], video_path: str | os.PathLike[str],
               class_names: Sequence[str | int] = (), topk: int = 1,
               frames: int | None = None, sliding: bool = False) -> list[VideoCAM]:
    """Maps of several classes of one video from a single forward pass.

    The clip is the model's evaluation view (``meta["input"]``: sampler indices, short
    side resize, centre crop, normalisation). Returns the maps of the ``topk`` most
    probable classes (best first), then of each of ``class_names`` (names or indices).
    ``frames``: return ``K = frames`` of the ``T`` input frames, evenly spread (the
    model always sees all ``T``); ``None`` returns all ``T``.
    ``sliding``: instead, ``K = frames or 8`` frames spread over the whole video, each
    mapped from the view centred on it (module doc); ``probs`` are then those of the
    evaluation view, as without ``sliding``.
    """
    from momentlens.data.decode import open_video
    from momentlens.data.transforms import ClipTransform, to_tensor

    wanted = [class_index(meta, c) for c in class_names]
    spec = InputSpec.from_dict(meta["input"])
    with open_video(video_path) as reader:
        n_src = reader.num_frames
        indices = view_indices(meta, n_src)
        if sliding:
            centres, windows = _sliding_views(meta, n_src, frames or 8)
            src = reader.get_frames(np.concatenate([indices, windows.reshape(-1)]))
        else:
            src = reader.get_frames(indices)
        fps = float(reader.fps)
    transform = ClipTransform(size=spec.size, resize=spec.short_side, train=False)
    geo = transform.geometry(src.shape[1:3])
    device = next(model.parameters()).device
    t = len(indices)

    def prepare(clip_frames: np.ndarray) -> torch.Tensor:
        clip = to_tensor(transform(clip_frames))[None].to(device)
        return spec.normalize(clip)

    was_training = model.training
    model.eval()  # BatchNorm running statistics, as in evaluation
    try:
        with torch.no_grad():
            logits, features = cam_forward(model, prepare(src[:t]))
            if sliding:
                w = windows.shape[1]
                views = torch.cat([prepare(src[t + i * w:t + (i + 1) * w])
                                   for i in range(len(centres))])
                _, window_features = cam_forward(model, views)
    finally:
        model.train(was_training)
    probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy()
    top = np.argsort(-probs, kind="stable")[:max(0, topk)].tolist()
    size = spec.size
    if sliding:
        keep_frames, shown = centres, src[t + np.arange(len(centres)) * windows.shape[1]
                                          + windows.shape[1] // 2]
    else:
        keep = _pick(t, frames)
        keep_frames, shown = indices[keep], src[:t][keep]
    out = []
    for c in top + wanted:
        with torch.no_grad():
            if sliding:
                w = windows.shape[1]
                maps = cam_from_features(model, window_features, c, out_thw=(w, size, size))
                low = maps[:, w // 2]  # the time position of each window's centre frame
                evid = temporal_evidence(model, window_features, c, num_frames=w)[:, w // 2]
            else:
                low = cam_from_features(model, features, c, out_thw=(t, size, size))[0][keep]
                evid = temporal_evidence(model, features, c, num_frames=t)[0][keep]
        low_np = low.cpu().numpy()
        lo = float(low_np.min())
        heat = np.stack([geo.uncrop(m, fill=lo) for m in low_np]).astype(np.float32)
        out.append(VideoCAM(
            heatmaps=heat, frame_indices=np.asarray(keep_frames, dtype=np.int64),
            class_index=int(c), class_name=str(meta["classes"][c]),
            probs=probs.astype(np.float32), frames=shown,
            evidence=evid.cpu().numpy().astype(np.float32),
            classes=list(meta["classes"]), fps=fps, video=str(video_path)))
    return out


def video_cam(model: nn.Module, meta: dict[str, Any], video_path: str | os.PathLike[str],
              class_name: str | int | None = None, frames: int | None = None) -> VideoCAM:
    """The map of ``class_name`` (default: the top-1 class) for one video; see
    :func:`video_cams`."""
    if class_name is None:
        return video_cams(model, meta, video_path, topk=1, frames=frames)[0]
    return video_cams(model, meta, video_path, class_names=[class_name], topk=0,
                      frames=frames)[0]


def true_class_from_path(video_path: str | os.PathLike[str], classes: Sequence[str]) -> str | None:
    """The video's parent folder name when it is one of ``classes`` (MiT layout)."""
    parent = Path(video_path).parent.name
    return parent if parent in classes else None
