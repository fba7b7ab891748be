"""Class probabilities over the whole length of a video, window by window.

A long video (a minute of footage where the action changes) is cut into windows of
``window_s`` seconds that start every ``stride_s`` seconds; each window is scored as if
it were a video of its own: the model's evaluation sampling
(:func:`~momentlens.data.sampling.segment_indices` for 2D models,
:func:`~momentlens.data.sampling.clip_indices` for 3D ones) inside the window, the
evaluation crop, the model's normalisation, and the same inference path as
``predict`` (:class:`~momentlens.engine.inference.InferencePath`). Windows are decoded
and scored ``batch`` at a time, so memory does not grow with the video's length.

``momentlens predict VIDEO --timeline`` writes :func:`timeline_csv` and
:func:`timeline_png`; ``momentlens serve`` shows the top class of each window.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from momentlens.data.decode import open_video
from momentlens.data.formats import DEFAULT_FPS
from momentlens.data.sampling import clip_indices, segment_indices
from momentlens.data.transforms import ClipTransform
from momentlens.engine.inference import InferencePath, activate
from momentlens.models.spec import InputSpec
from momentlens.utils import MomentlensError

WINDOW_BATCH = 8  # windows per forward pass: bounds memory on long videos


@dataclass
class Timeline:
    """Per-window class probabilities of one video.

    starts / ends: float64 ``(W,)`` seconds of each window (end exclusive);
    probs: float32 ``(W, K)`` softmax of each window; classes: the ``K`` names;
    fps and duration (seconds) of the video; window_s / stride_s as asked.
    """

    classes: list[str]
    starts: np.ndarray
    ends: np.ndarray
    probs: np.ndarray
    fps: float
    duration: float
    window_s: float
    stride_s: float

    def top(self, k: int = 1) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable classes of each window, best first."""
        order = np.argsort(-self.probs, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(p[j])) for j in row] for row, p in zip(order, self.probs)]

    def to_dict(self, k: int = 3) -> dict[str, Any]:
        """JSON-ready: settings and, per window, its span and top-``k`` classes."""
        return {"window_s": self.window_s, "stride_s": self.stride_s,
                "duration_s": round(self.duration, 3), "fps": round(self.fps, 3),
                "windows": [{"start_s": round(float(a), 3), "end_s": round(float(b), 3),
                             "top": [{"class": c, "prob": round(p, 6)} for c, p in tops]}
                            for a, b, tops in zip(self.starts, self.ends, self.top(k))]}


def window_spans(num_frames: int, fps: float, window_s: float, stride_s: float
                 ) -> list[tuple[int, int]]:
    """``[(first, end), ...]`` frame ranges (end exclusive) of windows of ``window_s``
    seconds every ``stride_s`` seconds; a video shorter than one window is one window,
    and a last partial step gets a window that ends with the video."""
    if not window_s > 0 or not stride_s > 0:
        raise MomentlensError(f"--window-s and --stride-s must be positive, got {window_s} "
                              f"and {stride_s}")
    length = max(1, round(window_s * fps))
    step = max(1, round(stride_s * fps))
    if num_frames <= length:
        return [(0, num_frames)]
    spans = [(a, a + length) for a in range(0, num_frames - length + 1, step)]
    if spans[-1][1] < num_frames:
        spans.append((num_frames - length, num_frames))
    return spans


def window_indices(spec: InputSpec, first: int, end: int) -> np.ndarray:
    """The frames the model sees of window ``[first, end)``: evaluation sampling of a
    video made of those frames alone."""
    n = end - first
    if spec.sampler == "segments":
        return first + segment_indices(n, spec.frames)
    return first + clip_indices(n, spec.frames, spec.stride)


def timeline(model: torch.nn.Module, meta: dict[str, Any], fast: InferencePath,
             video: str | os.PathLike[str], window_s: float = 3.0, stride_s: float = 1.0,
             batch: int = WINDOW_BATCH) -> Timeline:
    """Score every window of ``video`` (module doc); ``model``/``meta``/``fast`` as
    :func:`~momentlens.engine.inference.load_for_inference` returns them. An unreadable
    video raises :class:`~momentlens.data.decode.VideoDecodeError`."""
    spec: InputSpec = model.input_spec
    tf = ClipTransform(size=spec.size, resize=spec.short_side, train=False)
    norm = fast.normalizer(model, spec)
    with open_video(video) as reader:
        fps, num_frames = float(reader.fps) or DEFAULT_FPS, reader.num_frames
    spans = window_spans(num_frames, fps, window_s, stride_s)
    probs = []
    for i in range(0, len(spans), batch):
        views = [window_indices(spec, a, b) for a, b in spans[i:i + batch]]
        # A reader per batch: PyAVReader's second get_frames after a seek can come back
        # empty (an abandoned decode generator), so each batch decodes in a fresh one.
        with open_video(video) as reader:
            frames = reader.get_frames(np.concatenate(views))
        t = spec.frames
        clips = np.stack([tf(frames[j * t:(j + 1) * t]) for j in range(len(views))])
        x = torch.from_numpy(np.ascontiguousarray(clips.transpose(0, 4, 1, 2, 3)))
        logits = fast(model, norm(x.to(fast.device)))
        # A multi-label model's windows get per-class sigmoids (not summing to one).
        probs.append(activate(logits, bool(meta.get("multi_label"))).cpu().numpy())
    return Timeline(classes=list(meta["classes"]),
                    starts=np.array([a / fps for a, _ in spans]),
                    ends=np.array([b / fps for _, b in spans]),
                    probs=np.concatenate(probs).astype(np.float32), fps=fps,
                    duration=num_frames / fps, window_s=float(window_s),
                    stride_s=float(stride_s))


def timeline_csv(tl: Timeline) -> str:
    """``start_s,end_s,top1,top1_prob,<one column per class>``, one row per window."""
    lines = [",".join(["start_s", "end_s", "top1", "top1_prob", *tl.classes])]
    for a, b, p, (name, prob) in zip(tl.starts, tl.ends, tl.probs, (t[0] for t in tl.top(1))):
        lines.append(",".join([f"{a:.3f}", f"{b:.3f}", name, f"{prob:.6f}",
                               *(f"{v:.6f}" for v in p)]))
    return "\n".join(lines) + "\n"


def timeline_png(tl: Timeline, title: str = "", max_lines: int = 8) -> bytes:
    """Per-window probabilities of the classes that are ever among the top
    ``max_lines`` (by their highest probability), at each window's centre, as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    centres = (tl.starts + tl.ends) / 2
    shown = np.argsort(-tl.probs.max(axis=0), kind="stable")[:max_lines]
    for k in shown:
        ax.plot(centres, tl.probs[:, k], marker="o", markersize=3, label=tl.classes[k])
    ax.set_xlabel("time (s), window centre")
    ax.set_ylabel("class probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or f"class probability per {tl.window_s:g} s window, "
                 f"every {tl.stride_s:g} s", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
