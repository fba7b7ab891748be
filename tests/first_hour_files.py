"""Tiny real files of the kinds a newcomer has (issue 21), written with PyAV: portrait,
long, short, audio-only, a text file named .mp4, VP9/WebM, AVI/MPEG-4, and a
variable-frame-rate mp4. Each is a few KB and takes milliseconds to write."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from momentlens.data.encode import write_video


def frames(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, h, w, 3), dtype=np.uint8)
    return np.stack([np.roll(base[0], i, axis=1) for i in range(n)])


def write_with(path: Path, codec: str, fmt: str, clip: np.ndarray, fps: float = 25,
               pts: list[int] | None = None) -> Path:
    """``clip`` encoded with ``codec`` in container ``fmt``; ``pts``: frame timestamps
    in 1/``fps`` units (default 0, 1, 2, ...)."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(path), mode="w", format=fmt) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height = clip.shape[2], clip.shape[1]
        stream.pix_fmt = "yuv420p"
        for i, img in enumerate(clip):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = pts[i] if pts else i
            frame.time_base = 1 / rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    with av.open(str(path), mode="w", format="mp4") as out:
        stream = out.add_stream("aac", rate=16000)
        t = np.arange(16000, dtype=np.float32) / 16000
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def newcomer_folder(root: Path) -> dict[str, Path]:
    """A plain folder of clips as a newcomer has one (no splits, no labels)."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "portrait": root / "portrait.mp4", "long": root / "long.mp4",
        "short": root / "short.mp4", "webm": root / "sub" / "vp9.webm",
        "avi": root / "sub" / "mpeg4.avi", "audio": root / "audio_only.mp4",
        "text": root / "notes.mp4",
    }
    files["webm"].parent.mkdir()
    write_video(files["portrait"], frames(20, 64, 32), fps=25, preset="ultrafast")
    write_video(files["long"], frames(400), fps=25, preset="ultrafast", gop=25)
    write_video(files["short"], frames(5), fps=25, preset="ultrafast")
    write_with(files["webm"], "libvpx-vp9", "webm", frames(20), fps=30)
    write_with(files["avi"], "mpeg4", "avi", frames(20), fps=25)
    write_audio_only(files["audio"])
    files["text"].write_text("this is not a video\n", encoding="utf-8")
    return files
