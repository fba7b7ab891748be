"""Video readers behind one small protocol; backends are imported lazily.

``open_video(path)`` returns a :class:`VideoReader`: ``num_frames``, ``fps``,
``size`` = ``(H, W)`` and ``get_frames(indices, size=None) -> uint8 (T, H, W, 3)`` RGB
in ``[0, 255]``. Frame indices are 0-based positions in the order frames are shown
(the order a decoder outputs them). ``size=(h, w)`` asks for frames resized (bilinear)
to that size: PyAV does it inside FFmpeg's RGB conversion (swscale), the other
backends with PIL after decoding.

Backends:

``pyav`` (default)
    Multi-threaded decode (``thread_type="AUTO"``; ``threads=1`` for one core per
    DataLoader worker); decoding stops at the last needed frame. Seeking follows the
    stream's actual keyframes (:mod:`momentlens.data.seek`): for each needed frame, if
    the last keyframe at or before it lies ahead of the decoder, the reader seeks to
    that keyframe, otherwise it decodes forward. Keyframe positions and the frame
    index of every timestamp come from one demux pass per open (no decoding; skipped
    when the container's index shows no keyframe that could help), so the frames
    returned are exactly those of decoding from the start; streams whose timestamps
    cannot index frames are decoded from the start. Only the needed frames are
    converted to RGB, optionally resized in the same FFmpeg (swscale) call.
``torchcodec``
    Optional (``pip install torchcodec==0.13.0``, the build that works with torch 2.13
    CPU and Debian's FFmpeg libraries). Exact seeking.
``frames``
    A folder of JPEG frames ``image_00001.jpg ...`` (the layout of
    :mod:`momentlens.data.formats`: 1-based names, an optional ``fps`` file, else
    ``DEFAULT_FPS``).

Rotation: frames come out upright, as players show them, and ``size`` is the upright
size (a phone's portrait video is stored turned, with a display rotation:
:mod:`momentlens.data.orientation`). torchcodec turns them itself.

Frame counts: the container's count is used when it is present; when it is missing
(0) the packets are counted (demuxing without decoding; exact for H.264 in mp4).
When the header overstates the count (truncated files, common in real MiT data),
decoding stops early: ``num_frames`` is then corrected to the number actually decoded
and indices past the end are served by the last decoded frame, so a clip always has
the length asked for.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from momentlens.data.formats import DEFAULT_FPS, FPS_FILE, FRAME_PATTERN
from momentlens.data.orientation import display_turns, upright
from momentlens.data.seek import (
    FrameMap,
    has_hidden_packets,
    hidden_flags,
    keyframe_possible,
    plan_runs,
    scan_stream,
    shown_frames,
)
from momentlens.utils import MomentlensError


class VideoDecodeError(MomentlensError):
    """A video that cannot be read; the message names the file and the reason."""


@runtime_checkable
class VideoReader(Protocol):
    num_frames: int
    fps: float
    size: tuple[int, int]

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None
                   ) -> np.ndarray: ...

    def close(self) -> None: ...

    def __enter__(self) -> VideoReader: ...

    def __exit__(self, *exc: object) -> None: ...


class _Base:
    path: Path

    def __enter__(self) -> _Base:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def _check(self, indices: Sequence[int]) -> np.ndarray:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("get_frames needs at least one index")
        if idx.min() < 0 or idx.max() >= self.num_frames:
            raise IndexError(f"{self.path}: frame indices {idx.min()}..{idx.max()} outside "
                             f"0..{self.num_frames - 1}")
        return idx

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({str(self.path)!r}, num_frames={self.num_frames}, "
                f"fps={self.fps:.3f}, size={self.size})")


def _fail(path: Path, reason: str, exc: BaseException | None = None) -> VideoDecodeError:
    detail = f" ({type(exc).__name__}: {exc})" if exc is not None else ""
    return VideoDecodeError(f"{path}: {reason}{detail}")


def _resized(frames: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``frames`` resized (PIL bilinear) to ``size=(h, w)``; unchanged when ``None``."""
    if size is None or tuple(size) == frames.shape[1:3]:
        return frames
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(f).resize((size[1], size[0]), Image.BILINEAR))
                     for f in frames])


def _check_file(path: Path) -> None:
    if not path.exists():
        raise _fail(path, "file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise _fail(path, "empty file (0 bytes)")


# ----------------------------------------------------------------------------- PyAV


class PyAVReader(_Base):
    """PyAV reader. ``threads``: decoder threads (0 = FFmpeg's choice)."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        import av

        self.path = Path(path)
        _check_file(self.path)
        try:
            self._container = av.open(str(self.path), mode="r")
        except Exception as exc:  # FFmpeg raises many error types for bad input
            raise _fail(self.path, "not a readable video container", exc) from exc
        if not self._container.streams.video:
            self._container.close()
            raise _fail(self.path, "no video stream")
        self._stream = stream = self._container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.thread_count = threads
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        ctx = stream.codec_context
        self.size = (int(ctx.height), int(ctx.width))  # as stored; upright below
        # The header counts an edit list's hidden packets too (seek.shown_frames).
        self.num_frames = shown_frames(stream) or int(stream.frames or 0)
        if self.num_frames <= 0:
            self.num_frames = self._count_packets()
        if self.num_frames <= 0 or self.size[0] <= 0 or self.size[1] <= 0:
            self.close()
            raise _fail(self.path, "video stream has no frames")
        self._turns = display_turns(self._container, self._stream, self.path)
        if self._turns % 2:
            self.size = (self.size[1], self.size[0])
        self._fmap: FrameMap | None | bool = False  # not scanned yet
        self._sws = {"threads": threads} if threads > 0 else {}  # RGB conversion threads
        self._size: tuple[int, int] | None = None

    def _count_packets(self) -> int:
        try:
            packets = [p for p in self._container.demux(self._stream) if p.size > 0]
            n = hidden_flags([bool(p.is_keyframe) for p in packets],
                             [bool(getattr(p, "is_discard", False)) for p in packets]
                             ).count(False)
            self._container.seek(0)
        except Exception as exc:
            self.close()
            raise _fail(self.path, "cannot read packets", exc) from exc
        return n

    def close(self) -> None:
        container = getattr(self, "_container", None)
        if container is not None:
            container.close()
            self._container = None

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None
                   ) -> np.ndarray:
        """RGB frames ``uint8 (T, H, W, 3)`` for ``indices`` (any order, repeats allowed);
        ``size=(h, w)``: resized to that size inside FFmpeg's RGB conversion."""
        idx = self._check(indices)
        wanted = np.unique(idx)
        if self._container is None:
            raise _fail(self.path, "reader is closed")
        self._size = size
        try:
            got = self._decode([int(i) for i in wanted])
        except VideoDecodeError:
            raise
        except Exception as exc:
            raise _fail(self.path, f"decoding failed before frame {wanted[-1]}", exc) from exc
        if not got:
            raise _fail(self.path, "no frame could be decoded")
        last = max(got)
        if last < wanted[-1]:
            # Header promised more frames than the stream holds: trust the decoder.
            self.num_frames = last + 1
        return np.stack([got[int(i)] if int(i) in got else got[last] for i in idx])

    def _rgb(self, frame: object) -> np.ndarray:
        """The frame as upright RGB, at ``self._size`` (upright ``(h, w)``) if set."""
        if self._size is None:
            # POINT: no scaling, so it only picks how chroma is upsampled; nearest, as
            # FFmpeg's unscaled 8-bit converters do and as the ffmpeg command and
            # torchcodec give 10-bit video (bilinear differed by up to 36 levels there).
            rgb = frame.to_ndarray(format="rgb24", interpolation="POINT",  # type: ignore[attr-defined]
                                   **self._sws)
        else:
            h, w = self._size if self._turns % 2 == 0 else self._size[::-1]
            rgb = frame.to_ndarray(  # type: ignore[attr-defined]
                width=w, height=h, format="rgb24", interpolation="BILINEAR", **self._sws)
        return upright(rgb, self._turns)

    def _frame_map(self) -> FrameMap | None:
        if self._fmap is False:
            self._fmap = scan_stream(self._container, self._stream)
        return self._fmap  # type: ignore[return-value]

    def _decode(self, want: list[int]) -> dict[int, np.ndarray]:
        """Decode the sorted ``want`` frames, seeking to the last keyframe at or before
        a wanted frame whenever that keyframe lies ahead of the decoder
        (:func:`momentlens.data.seek.plan_runs`)."""
        fmap = self._frame_map() if keyframe_possible(self._stream, want[-1]) else None
        if fmap is None:
            return self._decode_sequential(set(want), want[-1])
        got: dict[int, np.ndarray] = {}
        for start, frames in plan_runs(want, fmap):
            if not self._decode_run(fmap, start, frames, got):
                return self._decode_sequential(set(want), want[-1])
        return got

    def _decode_run(self, fmap: FrameMap, start: int, frames: list[int],
                    got: dict[int, np.ndarray]) -> bool:
        """Seek to keyframe ``start`` and decode forward through ``frames`` into ``got``.
        False when the decoded timestamps contradict the frame map (the caller then
        decodes from the start); True otherwise, also when the stream ends early."""
        if start > 0:
            self._container.seek(fmap.seek_ts[start], stream=self._stream, backward=True,
                                 any_frame=False)
        else:
            self._container.seek(0)
        j = 0
        for frame in self._container.decode(self._stream):
            i = fmap.index.get(frame.pts) if frame.pts is not None else None
            if i is None or i > frames[j]:
                return False  # unknown timestamp, or the seek went past a wanted frame
            if i == frames[j]:
                got[i] = self._rgb(frame)
                j += 1
                if j == len(frames):
                    return True
        return True

    def _decode_sequential(self, want: set[int], last: int) -> dict[int, np.ndarray]:
        got: dict[int, np.ndarray] = {}
        self._container.seek(0)
        for i, frame in enumerate(self._container.decode(self._stream)):
            if i in want:
                got[i] = self._rgb(frame)
            if i >= last:
                break
        return got


# ----------------------------------------------------------------------------- torchcodec


class TorchCodecReader(_Base):
    """torchcodec reader (optional dependency)."""

    def __init__(self, path: str | os.PathLike[str], threads: int = 0) -> None:
        try:
            from torchcodec.decoders import VideoDecoder
        except ImportError as exc:
            raise ImportError(
                "the torchcodec backend needs torchcodec: pip install 'torchcodec==0.13.0' "
                "(the build that works with torch 2.13 CPU and the system FFmpeg libraries), "
                "or use backend='pyav'") from exc
        self.path = Path(path)
        _check_file(self.path)
        try:
            self._dec = VideoDecoder(str(self.path), device="cpu", seek_mode="exact",
                                     num_ffmpeg_threads=threads)
        except Exception as exc:
            raise _fail(self.path, "not a readable video", exc) from exc
        meta = self._dec.metadata
        self.num_frames = int(meta.num_frames or 0)
        self.fps = float(meta.average_fps or 0.0)
        self.size = (int(meta.height or 0), int(meta.width or 0))
        if self.num_frames <= 0:
            raise _fail(self.path, "video stream has no frames")
        if has_hidden_packets(self.path):
            # torchcodec 0.13 (exact seeking) returns wrong frames for such files: source
            # frame 30 for frames 0 and 10 of a clip cut at 15 with its keyframe at 0 (an
            # edit list), source frames 30, 30, 50 for frames 0, 10, 40 of a file that
            # starts 20 frames before its first keyframe. They must not pass silently.
            raise _fail(self.path, "some of its packets are never shown (an edit list "
                        "hides them: cut with ffmpeg -c copy?, or it starts without a "
                        "keyframe) and torchcodec 0.13 returns wrong frames for such "
                        "files; read it with the default pyav backend")

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None
                   ) -> np.ndarray:
        """RGB frames ``uint8 (T, H, W, 3)`` for ``indices`` (any order, repeats allowed)."""
        idx = self._check(indices)
        try:
            batch = self._dec.get_frames_at(idx.tolist())
        except Exception as exc:
            raise _fail(self.path, "decoding failed", exc) from exc
        return _resized(batch.data.permute(0, 2, 3, 1).contiguous().numpy(), size)


# ----------------------------------------------------------------------------- JPEG frames


class FrameFolderReader(_Base):
    """A folder of ``image_00001.jpg ...`` frames."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from PIL import Image

        self.path = Path(path)
        if not self.path.is_dir():
            raise _fail(self.path, "frame folder not found")
        n = 0
        while (self.path / FRAME_PATTERN.format(n + 1)).is_file():
            n += 1
        if n == 0:
            raise _fail(self.path, f"no {FRAME_PATTERN.format(1)} in frame folder")
        self.num_frames = n
        fps_file = self.path / FPS_FILE
        self.fps = float(fps_file.read_text().strip()) if fps_file.is_file() else DEFAULT_FPS
        try:
            with Image.open(self.path / FRAME_PATTERN.format(1)) as img:
                self.size = (img.height, img.width)
        except Exception as exc:
            raise _fail(self.path / FRAME_PATTERN.format(1), "unreadable JPEG frame", exc) from exc

    def get_frames(self, indices: Sequence[int], size: tuple[int, int] | None = None
                   ) -> np.ndarray:
        """RGB frames ``uint8 (T, H, W, 3)`` for ``indices`` (any order, repeats allowed)."""
        from PIL import Image

        idx = self._check(indices)
        cache: dict[int, np.ndarray] = {}
        for i in np.unique(idx).tolist():
            file = self.path / FRAME_PATTERN.format(i + 1)
            try:
                with Image.open(file) as img:
                    cache[i] = np.asarray(img.convert("RGB"))
            except Exception as exc:
                raise _fail(file, "unreadable JPEG frame", exc) from exc
        return _resized(np.stack([cache[i] for i in idx.tolist()]), size)


# ----------------------------------------------------------------------------- entry point

BACKENDS = ("auto", "pyav", "torchcodec", "frames")


def open_video(path: str | os.PathLike[str], backend: str = "auto", threads: int = 0
               ) -> VideoReader:
    """Open ``path`` (a video file or a JPEG frame folder) for reading.

    ``backend="auto"``: ``frames`` for a folder, else ``pyav``. ``threads``: decoder
    threads for the video backends (0 = FFmpeg's choice). Raises
    :class:`VideoDecodeError` naming the file and the reason for unreadable input.
    """
    path = Path(path)
    if backend not in BACKENDS:
        raise MomentlensError(f"unknown decode backend {backend!r}; choose {', '.join(BACKENDS)}")
    if backend == "frames" or (backend == "auto" and path.is_dir()):
        return FrameFolderReader(path)
    if backend == "torchcodec":
        return TorchCodecReader(path, threads=threads)
    return PyAVReader(path, threads=threads)
