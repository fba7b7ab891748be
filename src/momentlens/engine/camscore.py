"""CAM over a dataset: localisation scores for ``evaluate --cam`` and the report's gallery.

The map scored is the one of the video's **true** class (what the pointing game asks:
does the evidence for the action sit on the object that performs it?), on ``frames``
frames spread over the whole video, each from the model's view centred on it
(``video_cams(..., sliding=True)``), mapped back to the source pixel grid where the
boxes of ``boxes.json`` live.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from momentlens.analysis.cam import video_cams
from momentlens.analysis.localize import load_boxes, score_localization
from momentlens.data.layout import Split
from momentlens.utils import MomentlensError, progress


def _per_class_subset(records: list[Any], per_class: int) -> list[Any]:
    if per_class <= 0:
        return list(records)
    taken: dict[int, int] = defaultdict(int)
    out = []
    for rec in records:
        if taken[rec.label] < per_class:
            taken[rec.label] += 1
            out.append(rec)
    return out


def cam_scores(model: torch.nn.Module, meta: dict[str, Any], split: Split, records: list[Any],
               device: torch.device, frames: int = 8, per_class: int = 0,
               threshold: float = 0.5) -> dict[str, Any]:
    """Pointing game and IoU of the true-class CAM, per class and overall.

    ``records``: the readable videos of ``split`` to score (``per_class`` > 0 keeps the
    first that many of each class). Videos that ``boxes.json`` does not list are skipped;
    no box file at all is an error.
    """
    model = model.to(device).eval()
    cams, boxes, names = [], [], []
    chosen = _per_class_subset(records, per_class)
    for rec in progress(chosen, total=len(chosen), desc="CAM localisation", unit="video"):
        rel = Path(rec.path).relative_to(Path(split.root) / split.name).as_posix() \
            if Path(rec.path).is_relative_to(Path(split.root) / split.name) else Path(rec.path).name
        gt = load_boxes(split.root, split.name, rel)
        if gt is None:
            continue
        true_name = split.classes[rec.label]
        cam = video_cams(model, meta, rec.path, class_names=[true_name], topk=0,
                         frames=frames, sliding=True)[0]
        cams.append(cam)
        boxes.append(gt)
        names.append(true_name)
    if not cams:
        raise MomentlensError(f"none of the {len(chosen)} videos has boxes in "
                              f"{split.root}/boxes.json")
    result = score_localization(cams, boxes, names, threshold=threshold)
    result.update({"class": "true", "frames_per_video": frames, "threshold": threshold})
    return result


def gallery_section(run_dir: str | Path, eval_dir: str | Path, data: str | Path,
                    device: str = "auto", label: str = "", correct: int = 3, wrong: int = 3,
                    split: str = "validation") -> str:
    """HTML: the most confident correct and wrong predictions of an evaluation, with the
    CAM of the predicted class and, for mistakes, of the true class (paper Figure 6)."""
    from momentlens.analysis.camviz import GalleryItem, gallery_html
    from momentlens.analysis.evalio import read_evaluation
    from momentlens.engine.checkpoint import load_model
    from momentlens.engine.runtime import resolve_device

    model, meta = load_model(run_dir, resolve_device(device))  # "auto" is a CLI name
    ev = read_evaluation(eval_dir)
    pred = ev.probs.argmax(axis=1)
    conf = ev.probs.max(axis=1)
    right = [i for i in np.argsort(-conf, kind="stable") if pred[i] == ev.labels[i]][:correct]
    bad = [i for i in np.argsort(-conf, kind="stable") if pred[i] != ev.labels[i]][:wrong]
    items = []
    for i in right + bad:
        path = Path(data) / ev.paths[i]
        if not path.is_file():
            path = Path(data) / split / ev.paths[i]
        true_name = ev.class_names[ev.labels[i]]
        cams = video_cams(model, meta, path, class_names=[true_name], topk=1, frames=6)
        items.append(GalleryItem(true_class=true_name, predicted=cams[0], true=cams[1]))
    head = f"<h3>{label}</h3>" if label else ""
    return head + gallery_html(items)
