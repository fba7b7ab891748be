"""Tiny videos made on the fly for the data pipeline tests.

``write_test_video(path, n, h, w)`` writes a real H.264 mp4 whose frame ``i`` is flat
(red ``8 * i mod 256``, blue ``8 * (i // 32)``) with a bright green band in its left
quarter, so tests can read back which frame they got (``frame_id``) and whether it was
mirrored. Tests get these helpers through the ``vids`` fixture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from momentlens.data.encode import write_video

STEP = 8  # grey-level step between frames: survives H.264 rounding


def frames_for(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = (STEP * i) % 256
        frames[i, ..., 2] = STEP * (i // 32)  # blue counts wraps of the red level
        frames[i, :, : max(1, w // 4), 1] = 255  # marker: left quarter bright green
    return frames


def frame_id(frame: np.ndarray) -> int:
    """Which frame of :func:`frames_for` this is (from the red channel's grey level)."""
    red = round(float(np.median(frame[..., 0])) / STEP)
    return red + 32 * round(float(np.median(frame[..., 2])) / STEP)


def write_test_video(path: Path, n: int = 12, h: int = 32, w: int = 32, gop: int | None = None,
                     pix_fmt: str = "yuv420p") -> Path:
    write_video(path, frames_for(n, h, w), fps=30, crf=18, gop=gop, preset="ultrafast",
                pix_fmt=pix_fmt)
    return path


def write_phone_video(path: Path, frames: np.ndarray, rotation: int,
                      pix_fmt: str = "yuv420p") -> Path:
    """``frames`` stored as they are, with a display matrix turning them ``rotation``
    degrees counter-clockwise: what a phone writes for a portrait video (``rotation``
    -90: the mp4 track matrix ``0 1 0 / -1 0 0 / 0 0 1``, ffprobe's ``rotation=-90``);
    ``pix_fmt="yuv420p10le"``: 10-bit H.264, as HDR phone video is 10-bit."""
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=30, options={"crf": "12"})
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if rotation:
            s.set_display_rotation(rotation)
        for img in frames:
            for packet in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(packet)
        for packet in s.encode():
            c.mux(packet)
    return path


def write_audio_only(path: Path) -> Path:
    """An .mp4 with one AAC audio stream and no video stream."""
    import av

    with av.open(str(path), "w", format="mp4") as c:
        s = c.add_stream("aac", rate=8000)
        s.layout = "mono"
        samples = np.zeros((1, 1024), dtype=np.float32)
        for k in range(4):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 8000
            frame.pts = k * 1024
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_broken_set(folder: Path) -> dict[str, Path]:
    """The broken files of issue 3 plus two good videos, in one folder."""
    folder.mkdir(parents=True, exist_ok=True)
    good = write_test_video(folder / "good.mp4", 30)
    files = {"good": good, "good2": write_test_video(folder / "good2.mp4", 24)}
    (folder / "zero.mp4").write_bytes(b"")
    files["zero"] = folder / "zero.mp4"
    data = good.read_bytes()
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 3])
    files["truncated"] = folder / "truncated.mp4"
    (folder / "text.mp4").write_text("this is not a video\n")
    files["text"] = folder / "text.mp4"
    files["audio"] = write_audio_only(folder / "audio.mp4")
    files["one_frame"] = write_test_video(folder / "one_frame.mp4", 1)
    files["odd"] = write_test_video(folder / "odd.mp4", 8, h=97, w=173, pix_fmt="yuv444p")
    return files


def write_mit(root: Path, classes=("jumping", "plus+sign", "running"), per_class: int = 2,
              n: int = 12, splits=("training", "validation")) -> Path:
    """A tiny dataset in the Moments-in-Time release layout."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "moments_categories.txt").write_text(
        "".join(f"{c},{i}\n" for i, c in enumerate(classes)))
    for split in splits:
        rows = []
        for c in classes:
            for k in range(per_class):
                rel = f"{c}/{split[:3]}_{k}.mp4"
                write_test_video(root / split / rel, n)
                rows.append(f"{rel},{c},3,0\n")
        (root / f"{split}Set.csv").write_text("".join(rows))
    return root


@pytest.fixture
def mit_root(tmp_path: Path) -> Path:
    return write_mit(tmp_path / "mit")


class _Videos:
    """The helpers above, handed to tests as the ``vids`` fixture (tests/ is not a
    package, so test modules cannot import this file by name)."""

    frames_for = staticmethod(frames_for)
    frame_id = staticmethod(frame_id)
    write_test_video = staticmethod(write_test_video)
    write_phone_video = staticmethod(write_phone_video)
    write_audio_only = staticmethod(write_audio_only)
    write_broken_set = staticmethod(write_broken_set)
    write_mit = staticmethod(write_mit)


@pytest.fixture
def vids() -> type[_Videos]:
    return _Videos
