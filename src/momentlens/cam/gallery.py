"""The report's CAM gallery: an evaluation's most confident right and wrong predictions,
each with the map of its predicted class and, for a mistake, of its true class (the
paper's Figure 6, "wrong classification but great localization"). Pictures are embedded
as base64 PNG strips, so the HTML fragment is self-contained.
"""

from __future__ import annotations

import base64
import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from momentlens.analysis.evalio import read_evaluation
from momentlens.cam.render import cam_rows, contact_sheet, png_bytes
from momentlens.cam.video import VideoCAM, video_cams


@dataclass
class GalleryItem:
    """One video of the gallery: the map of its predicted class and, when the
    prediction is wrong, of its true class."""

    true_class: str
    predicted: VideoCAM
    true: VideoCAM | None = None

    @property
    def correct(self) -> bool:
        return self.predicted.class_name == self.true_class


def _strip(item: GalleryItem, max_frames: int) -> bytes:
    """PNG: the frames and the map rows of one item, ``max_frames`` frames evenly spread."""
    n = len(item.predicted.frame_indices)
    pick = np.unique(np.round(np.linspace(0, n - 1, min(max_frames, n))).astype(int))
    others = ([("true", item.true.subset(pick))]
              if item.true is not None and not item.correct else [])
    rows = cam_rows(item.predicted.subset(pick), others)
    return png_bytes(contact_sheet(rows, cell_height=80, label_width=130))


def gallery_html(items: Sequence[GalleryItem], max_frames: int = 6) -> str:
    """HTML fragment: correct and wrong predictions with their CAMs, captioned
    "true: X, predicted: Y (p)"."""
    parts = []
    for title, group in (("Correct predictions", [i for i in items if i.correct]),
                         ("Wrong predictions", [i for i in items if not i.correct])):
        if not group:
            continue
        parts.append(f"<h3>{html.escape(title)}</h3>")
        for item in group:
            p = item.predicted
            caption = (f"true: {item.true_class}, predicted: {p.class_name} "
                       f"({p.probs[p.class_index]:.2f})")
            name = html.escape(Path(p.video).name)
            data = base64.b64encode(_strip(item, max_frames)).decode("ascii")
            parts.append(
                f'<figure class="cam-gallery"><img src="data:image/png;base64,{data}" '
                f'alt="{name}"><figcaption>{html.escape(caption)} &mdash; {name}'
                "</figcaption></figure>")
    return "\n".join(parts)


def gallery_section(model: nn.Module, meta: dict[str, Any],
                    eval_dir: str | os.PathLike[str], data: str | os.PathLike[str],
                    label: str = "", correct: int = 3, wrong: int = 3,
                    split: str = "validation", frames: int = 6,
                    sliding: bool | None = None) -> str:
    """HTML: the ``correct`` most confident right and ``wrong`` most confident wrong
    predictions of the evaluation in ``eval_dir`` (of ``model`` on ``data``), each with
    ``frames`` maps (``sliding``: :mod:`momentlens.cam.video`)."""
    ev = read_evaluation(eval_dir)
    pred = ev.probs.argmax(axis=1)
    order = np.argsort(-ev.probs.max(axis=1), kind="stable")
    right = [i for i in order if pred[i] == ev.labels[i]][:correct]
    bad = [i for i in order if pred[i] != ev.labels[i]][:wrong]
    items = []
    for i in right + bad:
        path = Path(data) / ev.paths[i]
        if not path.is_file():
            path = Path(data) / split / ev.paths[i]
        true_name = ev.class_names[ev.labels[i]]
        cams = video_cams(model, meta, path, class_names=[true_name], topk=1, frames=frames,
                          sliding=sliding)
        items.append(GalleryItem(true_class=true_name, predicted=cams[0], true=cams[1]))
    head = f"<h3>{html.escape(label)}</h3>" if label else ""
    return head + gallery_html(items)
