"""Class activation maps of a video file, on its own pixel grid and over its whole length.

The frames, crop and normalisation the model sees are those of evaluation: a
:class:`~momentlens.data.dataset.VideoDataset` with ``train=False`` and the model's
:class:`~momentlens.models.spec.InputSpec` (``spec.dataset_options()``) decodes and
transforms the video (:meth:`~momentlens.data.dataset.VideoDataset.eval_views`), and the
dataset's transform says where its crop came from
(:meth:`~momentlens.data.transforms.ClipTransform.geometry`), so maps go back to the source
pixel grid with :meth:`~momentlens.data.transforms.CropGeometry.uncrop`.

Two ways to spread maps over time (the maps themselves: :mod:`momentlens.cam.maps`):

* **one view** (``sliding=False``): the maps of ``K`` of the ``T`` frames of the model's
  single evaluation view. A 3D model's last map has few time slices (one for 16 frames),
  so its ``K`` maps are then copies of each other and the evidence is a flat line.
* **sliding windows** (``sliding=True``): ``K`` frames spread over the whole video; the map
  of frame ``f`` is taken from the model's view *centred on* ``f`` (the frames
  ``f + stride * (k - T // 2)``, clamped; for 2D models the frame alone), at the time
  position of ``f``. All windows go through the model in batches.

``sliding=None`` (the default) slides exactly when the model's feature map has fewer time
steps than its input (``T' < T``: the 3D models), so maps and evidence follow time. The
class probabilities are always those of the evaluation view.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from momentlens.cam.maps import cam_forward, cam_from_features, temporal_evidence
from momentlens.data.dataset import VideoDataset
from momentlens.data.layout import VideoRecord
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

WINDOW_BATCH = 8  # sliding windows per forward pass: bounds memory on long videos


@dataclass
class VideoCAM:
    """The class activation map of one class over ``K`` frames of one video.

    heatmaps:      float32 ``(K, H_src, W_src)``, logit units, on the source pixel grid
                   (pixels outside the model's centre crop get the map's minimum).
    frame_indices: int64 ``(K,)`` 0-based source frame indices of the maps.
    frames:        uint8 ``(K, H_src, W_src, 3)`` the source frames (RGB).
    evidence:      float32 ``(K,)`` class score of the time slice at each frame
                   (:mod:`momentlens.cam.maps`), logit units.
    class_index / class_name: the mapped class; ``probs`` float32 ``(num_classes,)`` the
    softmax of the evaluation view; ``classes`` the model's class names; ``fps`` of the
    source; ``sliding`` whether the maps came from sliding windows.
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
    sliding: bool = False

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

    def subset(self, pick: np.ndarray) -> VideoCAM:
        """The same map on the frames at positions ``pick`` (of ``0..K-1``)."""
        return VideoCAM(self.heatmaps[pick], self.frame_indices[pick], self.class_index,
                        self.class_name, self.probs, self.frames[pick], self.evidence[pick],
                        self.classes, self.fps, self.video, self.sliding)


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


def true_class_from_path(video_path: str | os.PathLike[str], classes: Sequence[str]) -> str | None:
    """The video's parent folder name when it is one of ``classes`` (MiT layout)."""
    parent = Path(video_path).parent.name
    return parent if parent in classes else None


def input_spec(model: nn.Module, meta: dict[str, Any]) -> InputSpec:
    """The record of what ``model`` eats: ``meta["input"]`` (a checkpoint's), else
    ``model.input_spec``."""
    if "input" in meta:
        return InputSpec.from_dict(meta["input"])
    return model.input_spec


def cam_dataset(spec: InputSpec, records: Sequence[VideoRecord]) -> VideoDataset:
    """The evaluation dataset of ``records`` as ``spec`` says (the path CAM decodes through)."""
    # CAM raises on an unreadable video instead of quarantining it: nothing is written.
    return VideoDataset(records, train=False, quarantine_path=os.devnull,
                        **spec.dataset_options())


def _count(frames: int | None, default: int) -> int:
    k = default if frames is None else int(frames)
    if k < 1:
        raise MomentlensError(f"--frames must be at least 1, got {k}")
    return k


def _to_input(clips: Sequence[np.ndarray], spec: InputSpec, device: torch.device
              ) -> torch.Tensor:
    """uint8 clips ``(T, H, W, 3)`` -> the model's float input ``(B, 3, T, H, W)``."""
    x = torch.from_numpy(np.ascontiguousarray(np.stack(clips).transpose(0, 4, 1, 2, 3)))
    return spec.normalize(x.to(device))


def _forward(model: nn.Module, spec: InputSpec, clips: list[np.ndarray], sliding: bool | None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, bool]:
    """Eval-mode passes: ``(logits (1, N), view features (1, C, T', H', W'), window
    features (K, C, T'', H', W') or None, sliding)``; ``sliding=None`` resolved."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # BatchNorm running statistics, as in evaluation
    try:
        with torch.inference_mode():
            logits, features = cam_forward(model, _to_input(clips[:1], spec, device))
            if sliding is None:
                sliding = features.shape[2] < clips[0].shape[0]
            if not sliding:
                return logits, features, None, False
            windows = [cam_forward(model, _to_input(clips[i:i + WINDOW_BATCH], spec, device))[1]
                       for i in range(1, len(clips), WINDOW_BATCH)]
            return logits, features, torch.cat(windows), True
    finally:
        model.train(was_training)


def _maps_of(model: nn.Module, c: int, features: torch.Tensor, t: int,
             keep: np.ndarray | None, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Class ``c`` on ``t``-frame inputs: maps ``(K, size, size)`` on the crop and evidence
    ``(K,)``. One view (``features`` ``(1, ...)``): the input frames at positions ``keep``;
    sliding windows (``(K, ...)``): each window's centre frame ``t // 2``."""
    with torch.inference_mode():
        maps = cam_from_features(model, features, c, out_thw=(t, size, size))
        evidence = temporal_evidence(model, features, c, num_frames=t)
    if keep is not None:
        return maps[0][keep], evidence[0][keep]
    return maps[:, t // 2], evidence[:, t // 2]


def dataset_cams(model: nn.Module, meta: dict[str, Any], dataset: VideoDataset, index: int,
                 class_names: Sequence[str | int] = (), topk: int = 1,
                 frames: int | None = None, sliding: bool | None = None) -> list[VideoCAM]:
    """Maps of several classes of item ``index`` of ``dataset`` (from :func:`cam_dataset`).

    Returns the maps of the ``topk`` most probable classes (best first), then of each of
    ``class_names`` (names or indices). ``frames``: ``K``, the number of maps (default: the
    model's ``T`` input frames); one view: ``K`` of its ``T`` frames evenly spread;
    sliding: ``K`` frames spread over the whole video. ``sliding``: module doc.
    """
    wanted = [class_index(meta, c) for c in class_names]
    spec = input_spec(model, meta)
    k = _count(frames, spec.frames)
    centres = np.linspace(0.0, 1.0, k) if sliding is not False else ()
    clips, views, source, fps = dataset.eval_views(index, centres)
    geo = dataset.transform.geometry(source.shape[1:3])
    logits, features, windows, sliding = _forward(model, spec, clips, sliding)
    t = len(views[0])
    if sliding:
        w = len(views[1])
        keep_frames = np.array([v[w // 2] for v in views[1:]], dtype=np.int64)
        shown = source[t + np.arange(k) * w + w // 2]
        features, keep, t = windows, None, w
    else:
        keep = np.round(np.linspace(0, t - 1, min(k, t))).astype(np.int64)
        keep_frames, shown = views[0][keep], source[:t][keep]
    probs = torch.softmax(logits.float(), dim=1)[0].cpu().numpy().astype(np.float32)
    out = []
    for c in np.argsort(-probs, kind="stable")[:max(0, topk)].tolist() + wanted:
        low, evidence = _maps_of(model, c, features, t, keep, spec.size)
        low_np = low.cpu().numpy()
        heat = np.stack([geo.uncrop(m, fill=float(low_np.min())) for m in low_np])
        out.append(VideoCAM(
            heatmaps=heat.astype(np.float32), frame_indices=keep_frames.astype(np.int64),
            class_index=int(c), class_name=str(meta["classes"][c]), probs=probs, frames=shown,
            evidence=evidence.cpu().numpy().astype(np.float32), classes=list(meta["classes"]),
            fps=fps, video=str(dataset.records[index].path), sliding=sliding))
    return out


def video_cams(model: nn.Module, meta: dict[str, Any], video_path: str | os.PathLike[str],
               class_names: Sequence[str | int] = (), topk: int = 1,
               frames: int | None = None, sliding: bool | None = None) -> list[VideoCAM]:
    """:func:`dataset_cams` of one video file; ``meta``: ``{"classes": [...], "input":
    record}`` as :func:`momentlens.engine.checkpoint.load_model` returns it."""
    for c in class_names:
        class_index(meta, c)  # an unknown name fails before any decoding
    dataset = cam_dataset(input_spec(model, meta), [VideoRecord(Path(video_path), 0)])
    return dataset_cams(model, meta, dataset, 0, class_names, topk, frames, sliding)


def video_cam(model: nn.Module, meta: dict[str, Any], video_path: str | os.PathLike[str],
              class_name: str | int | None = None, frames: int | None = None,
              sliding: bool | None = None) -> VideoCAM:
    """The map of ``class_name`` (default: the top-1 class) for one video; see
    :func:`dataset_cams`."""
    if class_name is None:
        return video_cams(model, meta, video_path, topk=1, frames=frames, sliding=sliding)[0]
    return video_cams(model, meta, video_path, class_names=[class_name], topk=0,
                      frames=frames, sliding=sliding)[0]
