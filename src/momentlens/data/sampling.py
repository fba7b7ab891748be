"""Temporal sampling: which frames of a video make one input. Indices only, no pixels.

Every function returns 0-based frame indices (``int64``) into a video of
``num_frames`` frames, always inside ``[0, num_frames)``, in temporal order.

* :func:`segment_indices` -- K equally spaced segments, one frame from each (the
  2D model's input; the paper uses K = 4): a random offset inside each segment when
  training, the segment centre otherwise.
* :func:`clip_indices` -- a contiguous clip of ``length`` frames taken every
  ``stride`` frames (the 3D model's input; the paper uses 16): random start when
  training, centred otherwise.
* :func:`multi_clip_indices` / :func:`multi_segment_indices` -- N views spread
  uniformly over the video for test-time averaging.

Short videos (the rule): a clip that does not fit is **looped** -- the frames
``0, stride, 2*stride, ... < num_frames`` are repeated from the start until the clip is
full (as 3D-ResNets-PyTorch's ``LoopPadding``). Segment sampling with fewer frames
than segments repeats frames in order (segment ``i`` takes frame
``floor((i + 0.5) * num_frames / k)``), so nothing is ever out of range.
"""

from __future__ import annotations

import numpy as np


def _check(num_frames: int, count: int, what: str) -> None:
    if num_frames < 1:
        raise ValueError(f"a video needs at least one frame, got num_frames={num_frames}")
    if count < 1:
        raise ValueError(f"{what} must be at least 1, got {count}")


def segment_indices(num_frames: int, k: int, train: bool = False,
                    rng: np.random.Generator | None = None, offset: float = 0.5) -> np.ndarray:
    """One frame from each of ``k`` equal segments: shape ``(k,)``.

    Training: a uniformly random position inside each segment (``rng`` required for
    reproducibility; a fresh default generator otherwise). Evaluation: position
    ``offset`` (a fraction of the segment, 0.5 = centre) inside each segment.
    """
    _check(num_frames, k, "k")
    seg = num_frames / k
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        pos = (np.arange(k) + rng.random(k)) * seg
    else:
        pos = (np.arange(k) + offset) * seg
    return np.minimum(np.floor(pos).astype(np.int64), num_frames - 1)


def multi_segment_indices(num_frames: int, k: int, num_views: int) -> list[np.ndarray]:
    """``num_views`` evaluation samplings of ``k`` segments each, offsets spread
    uniformly inside the segments (view ``v`` at ``(v + 0.5) / num_views``)."""
    _check(num_frames, num_views, "num_views")
    return [segment_indices(num_frames, k, False, offset=(v + 0.5) / num_views)
            for v in range(num_views)]


def _looped(num_frames: int, length: int, stride: int, start: int) -> np.ndarray:
    span = (length - 1) * stride + 1
    if span <= num_frames:
        return start + stride * np.arange(length, dtype=np.int64)
    base = np.arange(0, num_frames, stride, dtype=np.int64)
    return base[np.arange(length) % len(base)]


def clip_indices(num_frames: int, length: int, stride: int = 1, train: bool = False,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """A clip of ``length`` frames, ``stride`` apart: shape ``(length,)``.

    It spans ``(length - 1) * stride + 1`` frames; its start is uniform over all
    positions that fit when training, centred otherwise. Short videos loop (module doc).
    """
    _check(num_frames, length, "length")
    if stride < 1:
        raise ValueError(f"stride must be at least 1, got {stride}")
    max_start = num_frames - ((length - 1) * stride + 1)
    if max_start < 0:
        return _looped(num_frames, length, stride, 0)
    if train:
        rng = rng if rng is not None else np.random.default_rng()
        start = int(rng.integers(0, max_start + 1))
    else:
        start = max_start // 2
    return _looped(num_frames, length, stride, start)


def multi_clip_indices(num_frames: int, length: int, stride: int = 1, num_clips: int = 1
                       ) -> list[np.ndarray]:
    """``num_clips`` clips with starts spread evenly from the first to the last position
    that fits (one clip: centred). A short video gives ``num_clips`` identical looped clips."""
    _check(num_frames, num_clips, "num_clips")
    _check(num_frames, length, "length")
    max_start = num_frames - ((length - 1) * stride + 1)
    if max_start < 0:
        return [_looped(num_frames, length, stride, 0) for _ in range(num_clips)]
    if num_clips == 1:
        starts = [max_start // 2]
    else:
        starts = np.round(np.linspace(0, max_start, num_clips)).astype(int).tolist()
    return [_looped(num_frames, length, stride, s) for s in starts]
