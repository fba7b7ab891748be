"""How well class activation maps localise the action: pointing game and IoU.

Boxes are ``(x0, y0, x1, y1)`` in source pixels, end-exclusive (pixel ``(y, x)`` is in
the box when ``x0 <= x < x1`` and ``y0 <= y < y1``), the layout of the synthetic
dataset's ``boxes.json``. Heat maps are ``(H, W)`` on the same pixel grid (a
:class:`~momentlens.cam.video.VideoCAM` heat map is).

* **Pointing game** (Zhang et al., 2016): a hit when the map's maximum lies inside the
  box grown by ``tolerance`` pixels on every side (default 0: strictly inside). When
  the maximum is a plateau, the point is the plateau pixel nearest the frame centre.
  Plateaus come from upsampling: beyond the outermost feature-cell centres the edge
  value is held flat out to the crop border, so the maximal *edge cell* shows up as a
  plateau whose innermost pixel is that cell's centre, the position the evidence
  belongs to. (A centroid or the first pixel would push the point towards the border
  and turn a coarse but correct map into a miss.)
* **IoU**: the map is min-max scaled to ``[0, 1]`` and thresholded at ``threshold``
  (a fraction of its range, 0.5 by default); the score is the IoU of that pixel set
  with the box's pixel set (not of bounding boxes, so a scattered map is penalised).

A constant map (no localisation at all) is a miss with IoU 0. Frames whose box is
empty (object outside the frame) are skipped.

Over a dataset (:func:`cam_scores`, ``evaluate --cam``) the map scored is the one of the
video's **true** class (what the pointing game asks: does the evidence for the action sit
on the object that performs it?), on frames spread over the whole video, each from the
model's view centred on it (sliding windows, :mod:`momentlens.cam.video`), mapped back to
the source pixel grid where the boxes of ``boxes.json`` live.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from momentlens.cam.video import VideoCAM, cam_dataset, dataset_cams, input_spec
from momentlens.data.layout import Split, VideoRecord
from momentlens.utils import MomentlensError, progress

BOXES_FILE = "boxes.json"


def _box(box: Sequence[float]) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return x0, y0, x1, y1


def peak(heatmap: np.ndarray) -> tuple[float, float] | None:
    """``(y, x)`` pixel indices of the map's maximum (of a plateau: the pixel nearest
    the frame centre, module doc); ``None`` for a constant or non-finite map."""
    hm = np.asarray(heatmap, dtype=np.float64)
    if hm.ndim != 2:
        raise ValueError(f"heatmap must be (H, W), got shape {hm.shape}")
    if not np.isfinite(hm).all():
        return None
    top, low = hm.max(), hm.min()
    if top - low <= 1e-12 * max(1.0, abs(top)):
        return None
    ys, xs = np.nonzero(hm >= top - 1e-6 * (top - low))
    cy, cx = (hm.shape[0] - 1) / 2, (hm.shape[1] - 1) / 2
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))  # first of equals: deterministic
    return float(ys[i]), float(xs[i])


def pointing_game(heatmap: np.ndarray, box: Sequence[float], tolerance: int = 0) -> bool:
    """True when the map's maximum pixel ``(H, W)`` falls inside ``box`` (module doc)."""
    p = peak(heatmap)
    if p is None:
        return False
    x0, y0, x1, y1 = _box(box)
    y, x = int(round(p[0])), int(round(p[1]))
    return (x0 - tolerance <= x < x1 + tolerance) and (y0 - tolerance <= y < y1 + tolerance)


def cam_mask(heatmap: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Boolean ``(H, W)``: pixels at or above ``threshold`` of the map's min-max range."""
    hm = np.asarray(heatmap, dtype=np.float64)
    lo, hi = hm.min(), hm.max()
    if not np.isfinite(hm).all() or hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(hm.shape, dtype=bool)
    return (hm - lo) >= threshold * (hi - lo)


def box_mask(shape: tuple[int, int], box: Sequence[float]) -> np.ndarray:
    """Boolean ``(H, W)`` mask of an end-exclusive box, clipped to the frame."""
    x0, y0, x1, y1 = _box(box)
    mask = np.zeros(shape, dtype=bool)
    mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = True
    return mask


def box_iou(heatmap: np.ndarray, box: Sequence[float], threshold: float = 0.5) -> float:
    """IoU of the thresholded map's pixels with the box's pixels, in ``[0, 1]``."""
    cam = cam_mask(heatmap, threshold)
    gt = box_mask(cam.shape, box)
    union = np.count_nonzero(cam | gt)
    return float(np.count_nonzero(cam & gt) / union) if union else 0.0


def _empty(box: Sequence[float]) -> bool:
    x0, y0, x1, y1 = _box(box)
    return x1 <= x0 or y1 <= y0


def score_video(cam: VideoCAM, boxes: np.ndarray, threshold: float = 0.5, tolerance: int = 0
                ) -> tuple[float, float, int] | None:
    """Mean pointing hit rate and IoU over the frames of one VideoCAM.

    ``boxes``: ``(N_video, 4)`` boxes of *every* frame of the video, picked with
    ``cam.frame_indices``. Returns ``(pointing, iou, frames scored)``, or ``None``
    when no sampled frame has a box.
    """
    boxes = np.asarray(boxes)
    hits, ious = [], []
    for hm, fi in zip(cam.heatmaps, cam.frame_indices):
        if fi >= len(boxes) or _empty(boxes[fi]):
            continue
        hits.append(pointing_game(hm, boxes[fi], tolerance))
        ious.append(box_iou(hm, boxes[fi], threshold))
    if not hits:
        return None
    return float(np.mean(hits)), float(np.mean(ious)), len(hits)


def score_localization(cams: Sequence[VideoCAM], boxes_by_frame: Sequence[np.ndarray],
                       class_names: Sequence[str], threshold: float = 0.5,
                       tolerance: int = 0) -> dict[str, Any]:
    """Pointing game and IoU, averaged over sampled frames, then over videos.

    ``cams[i]``: a VideoCAM of video ``i``; ``boxes_by_frame[i]``: that video's
    ``(N_video, 4)`` boxes for every source frame; ``class_names[i]``: its true class
    (the grouping key of ``per_class``). Returns ``{"pointing", "iou", "videos",
    "per_class": {name: {"pointing", "iou", "n"}}}``; ``n`` counts scored videos.
    Videos without any box on their sampled frames are left out.
    """
    if not (len(cams) == len(boxes_by_frame) == len(class_names)):
        raise ValueError("cams, boxes_by_frame and class_names must have the same length")
    per: dict[str, list[tuple[float, float]]] = {}
    for cam, boxes, name in zip(cams, boxes_by_frame, class_names):
        scored = score_video(cam, boxes, threshold, tolerance)
        if scored is not None:
            per.setdefault(str(name), []).append(scored[:2])
    everything = [v for vals in per.values() for v in vals]
    out: dict[str, Any] = {
        "pointing": float(np.mean([v[0] for v in everything])) if everything else float("nan"),
        "iou": float(np.mean([v[1] for v in everything])) if everything else float("nan"),
        "videos": len(everything),
        "per_class": {
            name: {"pointing": float(np.mean([v[0] for v in vals])),
                   "iou": float(np.mean([v[1] for v in vals])), "n": len(vals)}
            for name, vals in sorted(per.items())
        },
    }
    return out


_BOX_CACHE: dict[tuple[str, float], dict[str, Any]] = {}


def read_boxes_file(data_root: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``boxes.json`` of a dataset folder (cached while the file is unchanged)."""
    path = Path(data_root) / BOXES_FILE
    if not path.is_file():
        raise MomentlensError(f"{path} not found: localisation needs ground-truth boxes "
                              "(the synthetic dataset writes them)")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _BOX_CACHE:
        try:
            _BOX_CACHE[key] = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise MomentlensError(f"{path} is not valid JSON: {exc}") from None
    return _BOX_CACHE[key]


def load_boxes(data_root: str | os.PathLike[str], split: str, rel_path: str | os.PathLike[str]
               ) -> np.ndarray | None:
    """Boxes ``int64 (N_video, 4)`` ``(x0, y0, x1, y1)`` of one video, or ``None`` when
    ``boxes.json`` does not list it. ``rel_path`` is relative to the split folder
    (``<class>/<file>.mp4``) or to the dataset root (``<split>/<class>/<file>.mp4``)."""
    videos = read_boxes_file(data_root).get("videos", {})
    rel = Path(rel_path).as_posix()
    key = rel if rel.startswith(f"{split}/") else f"{split}/{rel}"
    if key not in videos:
        return None
    return np.asarray(videos[key], dtype=np.int64).reshape(-1, 4)


def per_class_subset(records: Sequence[VideoRecord], per_class: int) -> list[VideoRecord]:
    """The first ``per_class`` records of each label (all when ``per_class`` <= 0)."""
    if per_class <= 0:
        return list(records)
    taken: dict[int, int] = {}
    out = []
    for rec in records:
        if taken.get(rec.label, 0) < per_class:
            taken[rec.label] = taken.get(rec.label, 0) + 1
            out.append(rec)
    return out


def boxed_records(split: Split, records: Sequence[VideoRecord]
           ) -> tuple[list[VideoRecord], list[np.ndarray]]:
    """The records that ``boxes.json`` lists, with their boxes ``(N_video, 4)``."""
    folder = Path(split.root) / split.name
    kept, boxes = [], []
    for rec in records:
        path = Path(rec.path)
        rel = path.relative_to(folder).as_posix() if path.is_relative_to(folder) else path.name
        gt = load_boxes(split.root, split.name, rel)
        if gt is not None:
            kept.append(rec)
            boxes.append(gt)
    return kept, boxes


def cam_scores(model: nn.Module, meta: dict[str, Any], split: Split,
               records: Sequence[VideoRecord], device: Any = None, frames: int = 8,
               per_class: int = 0, threshold: float = 0.5, sliding: bool = True
               ) -> dict[str, Any]:
    """Pointing game and IoU of the true-class CAM, per class and overall.

    ``records``: the readable videos of ``split`` to score (``per_class`` > 0 keeps the
    first that many of each class); videos that ``boxes.json`` does not list are skipped,
    no box file at all is an error. ``frames`` maps per video. ``sliding=True`` (the
    default, for every model) spreads them over the whole video; ``False`` takes them from
    the single evaluation view (:mod:`momentlens.cam.video`). ``device``: move the model
    there first (``None``: where it is).
    """
    if device is not None:
        model = model.to(device)
    chosen = per_class_subset(records, per_class)
    kept, boxes = boxed_records(split, chosen)
    if not kept:
        raise MomentlensError(f"none of the {len(chosen)} videos has boxes in "
                              f"{split.root}/{BOXES_FILE}")
    dataset = cam_dataset(input_spec(model, meta), kept)
    cams, names = [], []
    for i in progress(range(len(kept)), total=len(kept), desc="CAM localisation", unit="video"):
        true_name = split.classes[kept[i].label]
        cams.append(dataset_cams(model, meta, dataset, i, class_names=[true_name], topk=0,
                                 frames=frames, sliding=sliding)[0])
        names.append(true_name)
    result = score_localization(cams, boxes, names, threshold=threshold)
    result.update({"class": "true", "frames_per_video": frames, "threshold": threshold,
                   "sliding": sliding})
    return result
