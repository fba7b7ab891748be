"""Which way up a video's frames are shown: its display rotation.

A phone stores a portrait video as landscape frames plus a display matrix (the mp4
``tkhd`` matrix, FFmpeg's display-matrix side data) saying how to turn them; players,
the ``ffmpeg`` command and torchcodec show them turned. The PyAV reader
(:mod:`momentlens.data.decode`) does the same: :func:`display_turns` reads the turn from
the first decoded frame's ``VideoFrame.rotation`` (PyAV >= 13; 0 before) when a file is
opened, once per file per process (a dataset reopens its files every epoch), and
:func:`upright` applies it. Only multiples of 90 degrees are applied; a matrix that
also mirrors is not.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

# (path, bytes, mtime) -> quarter turns
_TURNS: dict[tuple[str, int, int], int] = {}
_TURNS_MAX = 100_000


def quarter_turns(rotation: float) -> int:
    """``np.rot90``'s ``k`` (counter-clockwise quarter turns) that shows a frame upright,
    from its display rotation in degrees counter-clockwise (FFmpeg's convention, as
    ``ffprobe`` and PyAV's ``VideoFrame.rotation`` report it: an upright portrait phone
    video is typically -90, turned a quarter clockwise)."""
    return int(round(float(rotation) / 90.0)) % 4


def upright(frame: np.ndarray, turns: int) -> np.ndarray:
    """``frame (H, W, C)`` turned ``turns`` quarter turns counter-clockwise (contiguous)."""
    return np.ascontiguousarray(np.rot90(frame, turns)) if turns % 4 else frame


def display_turns(container: object, stream: object, path: str | os.PathLike[str]) -> int:
    """Quarter turns that show the frames of ``stream`` (of the open PyAV ``container``
    of file ``path``) upright. Decodes the first frame unless the file was seen before,
    then rewinds. 0 when PyAV does not report a rotation or the first frame does not
    decode (the reader then reports the file when it decodes)."""
    path = Path(path)
    try:
        st = path.stat()
        key: tuple[str, int, int] | None = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    if key is not None and key in _TURNS:
        return _TURNS[key]
    try:
        frame = next(iter(container.decode(stream)), None)  # type: ignore[attr-defined]
        container.seek(0)  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - FFmpeg raises many error types for bad input
        return 0
    turns = quarter_turns(getattr(frame, "rotation", 0) or 0) if frame is not None else 0
    if key is not None:
        if len(_TURNS) >= _TURNS_MAX:
            _TURNS.clear()
        _TURNS[key] = turns
    return turns
