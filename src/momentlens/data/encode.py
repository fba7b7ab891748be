"""Writing H.264 mp4 files with PyAV (used by synth, prepare, cam and the tests)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from fractions import Fraction

import numpy as np

from momentlens.utils import atomic_path


def write_video(
    path: str | os.PathLike[str],
    frames: np.ndarray | Iterable[np.ndarray],
    fps: int | float = 30,
    crf: int = 23,
    gop: int | None = None,
    preset: str = "medium",
    threads: int = 1,
    pix_fmt: str = "yuv420p",
) -> None:
    """Encode RGB uint8 frames ``(T, H, W, 3)`` to an H.264 / yuv420p mp4, atomically.

    The file appears under ``path`` only once it is complete. ``gop`` is the keyframe
    interval in frames (``None``: the encoder's default); a short one makes random
    access cheap. Odd sizes are allowed: yuv420p needs even dimensions, so odd ones are
    padded by one pixel by repeating the last row/column (FFmpeg would refuse them).
    ``threads=1`` makes the output byte-for-byte reproducible. ``pix_fmt="yuv444p"``
    (no chroma subsampling) keeps odd sizes exactly, without padding.
    """
    import av

    frames = list(frames) if not isinstance(frames, np.ndarray) else frames
    if len(frames) == 0:
        raise ValueError("write_video needs at least one frame")
    first = np.asarray(frames[0])
    if first.dtype != np.uint8 or first.ndim != 3 or first.shape[2] != 3:
        raise ValueError(f"frames must be uint8 (H, W, 3), got {first.dtype} {first.shape}")
    height, width = first.shape[:2]
    subsampled = pix_fmt.startswith(("yuv420", "yuvj420", "nv12"))
    pad_h, pad_w = (height % 2, width % 2) if subsampled else (0, 0)
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=rate)
            stream.width = width + pad_w
            stream.height = height + pad_h
            stream.pix_fmt = pix_fmt
            options = {"crf": str(crf), "preset": preset}
            if gop is not None:
                options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
            if min(width, height) < 64:
                # On frames this small x264's lookahead (macroblock tree) made the output
                # differ from run to run; without it, tiny test videos are reproducible.
                options["x264-params"] = "rc-lookahead=0:mbtree=0"
            stream.options = options
            stream.thread_count = threads
            time_base = 1 / rate
            for i, img in enumerate(frames):
                img = np.asarray(img)
                if pad_h or pad_w:
                    img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                # Explicit timestamps: left unset, PyAV's guesses made the output vary
                # from run to run, which breaks byte-for-byte reproducibility.
                frame.pts = i
                frame.time_base = time_base
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
