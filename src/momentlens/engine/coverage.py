"""How much of a video ``momentlens predict`` looks at, said out loud.

Before scoring, each video is opened (header only) for its frame count and rate. The
clip count is then the one asked for (``--clips N``) or, by default, 1 for a video of a
few clip lengths and :data:`AUTO_MAX_CLIPS` evenly spread clips at most for a longer one
(one per clip length). Each result records what was scored (``scored``: clips, clip and
video seconds, whether the count was chosen automatically, and the sentence printed),
and a video shorter than one clip gets a warning naming its frame count. A video that
cannot be read gets its reason in one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from momentlens.data.formats import DEFAULT_FPS
from momentlens.models.spec import InputSpec

AUTO_MIN_SPANS = 4  # a video longer than this many clip lengths gets several clips
AUTO_MAX_CLIPS = 10


@dataclass(frozen=True)
class VideoPlan:
    """One video's frame count and rate, and the clips ``predict`` scores of it."""

    num_frames: int
    fps: float
    clips: int
    auto: bool


def clip_span(spec: InputSpec, num_frames: int) -> int:
    """Source frames one view spans: a clip's ``(T - 1) * stride + 1``; a segment
    sampling spreads over the whole video."""
    return num_frames if spec.sampler == "segments" else (spec.frames - 1) * spec.stride + 1


def plan_video(path: str | os.PathLike[str], spec: InputSpec, clips: int | None) -> VideoPlan:
    """Open ``path`` (header only) and choose its clip count; raises when it cannot be read."""
    from momentlens.data.decode import open_video

    with open_video(path, threads=1) as reader:
        n, fps = int(reader.num_frames), float(reader.fps or DEFAULT_FPS)
    if clips is not None:
        return VideoPlan(n, fps, max(1, int(clips)), False)
    spans = n // clip_span(spec, n)
    auto = min(AUTO_MAX_CLIPS, spans) if spans > AUTO_MIN_SPANS else 1
    return VideoPlan(n, fps, auto, auto > 1)


def scored(plan: VideoPlan, spec: InputSpec) -> dict:
    """The ``scored`` record of a result: what was looked at, and the sentence."""
    video_s = plan.num_frames / plan.fps
    span = min(clip_span(spec, plan.num_frames), plan.num_frames)
    clip_s = span / plan.fps
    s = "s" if plan.clips > 1 else ""
    if spec.sampler == "segments":
        text = (f"scored {plan.clips} view{s} of {spec.frames} frames spread over the "
                f"whole {video_s:.1f} s")
    else:
        where = "spread over" if plan.clips > 1 else "out of"
        text = f"scored {plan.clips} clip{s} of {clip_s:.1f} s {where} {video_s:.1f} s"
        if plan.auto:
            text += " (chosen for a long video; --clips N to change)"
        elif plan.clips * clip_s < 0.5 * video_s:
            text += "; use --clips N or --timeline"
    return {"clips": plan.clips, "clip_s": round(clip_s, 3), "video_s": round(video_s, 3),
            "frames": plan.num_frames, "auto": plan.auto, "text": text}


def short_warning(plan: VideoPlan, spec: InputSpec) -> str | None:
    """A warning when the video has fewer frames than one clip (frames are repeated)."""
    need = spec.frames if spec.sampler == "segments" else clip_span(spec, plan.num_frames)
    if plan.num_frames >= need:
        return None
    return (f"the video has {plan.num_frames} frames, fewer than the {need} of one clip: "
            "frames were repeated to fill it")


def reason(path: str | os.PathLike[str], exc: BaseException) -> str:
    """One line saying why ``path`` could not be used (no traceback, no training terms)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    name = str(path)
    if text.startswith(name):
        text = text[len(name):].lstrip(": ")
    if Path(path).is_dir():
        return f"cannot read: {text}"
    return f"cannot read this file as a video: {text}"
