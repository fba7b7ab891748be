"""``momentlens prepare``: a faster copy of a dataset, once, in the same layout.

``mode="video"``: every video re-encoded to H.264 (yuv420p, ``crf`` 23) with its short
side at ``short_side`` pixels (never upscaled; even, and the long side a multiple of
16 when it is at least 64 -- FFmpeg's RGB conversion is much faster then) and
a keyframe every ``gop`` frames, so reading a clip from the middle decodes only a few
frames. ``mode="frames"``: every video extracted to a folder of JPEG frames
``<name-without-extension>/image_00001.jpg ...`` plus an ``fps`` file (the paper's and
3D-ResNets-PyTorch's approach); the layout's CSV rows ``a/b.mp4`` resolve to ``a/b/``.

Resumable: every output is written under a temporary dot-name and renamed when
complete, so a final name always holds a complete file; a rerun skips finished
outputs and deletes temporaries left by a killed run. Small metadata files
(CSV, TXT, JSON, YAML) are copied last, then ``prepare_report.json``; a copy is
complete when that report exists. Unreadable videos are reported, not copied.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentlens.data.check import _map
from momentlens.data.decode import open_video
from momentlens.data.formats import (
    DEFAULT_FPS,
    FPS_FILE,
    FRAME_PATTERN,
    is_frame_folder,
    is_video_file,
)
from momentlens.data.transforms import resized_crop, short_side_hw
from momentlens.utils import MomentlensError, write_bytes_atomic, write_json_atomic

META_EXTENSIONS = (".csv", ".txt", ".json", ".yaml", ".yml")
REPORT_FILE = "prepare_report.json"


@dataclass(frozen=True)
class _Job:
    src: str
    dst: str
    mode: str
    short_side: int
    gop: int
    crf: int
    quality: int


def _scan(src: Path, out: Path) -> tuple[list[str], list[str]]:
    """(video paths, metadata paths) relative to ``src``, sorted; frame folders count
    as videos; dot-files and ``out`` (if inside ``src``) are skipped."""
    videos, meta = [], []
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        keep = []
        for d in sorted(dirnames):
            sub = here / d
            if d.startswith(".") or sub.resolve() == out.resolve():
                continue
            if is_frame_folder(sub):
                videos.append(str(sub.relative_to(src)))
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            if f.startswith("."):
                continue
            rel = str((here / f).relative_to(src))
            if is_video_file(f):
                videos.append(rel)
            elif f.lower().endswith(META_EXTENSIONS):
                meta.append(rel)
    return sorted(videos), sorted(meta)


def _target_hw(src_hw: tuple[int, int], short_side: int, even: bool) -> tuple[int, int]:
    hw = short_side_hw(src_hw, min(short_side, min(src_hw)))
    if even:
        # yuv420p needs even sizes; a long side that is a multiple of 16 also makes the
        # RGB conversion several times faster (FFmpeg's aligned path) for an aspect
        # change of at most a few per cent.
        short_i = 0 if hw[0] <= hw[1] else 1
        long_i = 1 - short_i
        out = list(hw)
        out[short_i] = max(2, 2 * round(hw[short_i] / 2))
        if hw[long_i] >= 64:
            out[long_i] = 16 * round(hw[long_i] / 16)
        else:
            out[long_i] = max(2, 2 * round(hw[long_i] / 2))
        hw = (out[0], out[1])
    return hw


def _clean_stale(final: Path) -> None:
    # Temporaries of a killed run: atomic_path's ".<name>.*" and frame mode's partial dirs.
    if final.parent.is_dir():
        for stale in final.parent.glob(f".{final.name}.*"):
            shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)


def _output_path(job: _Job) -> Path:
    dst = Path(job.dst)
    return dst.with_suffix("") if job.mode == "frames" and dst.suffix else dst


def _prepare_one(job: _Job) -> tuple[str, str, str | None]:
    """(source, status, error) with status ``done``, ``skipped`` or ``failed``."""
    final = _output_path(job)
    if final.exists():
        return job.src, "skipped", None
    _clean_stale(final)
    try:
        with open_video(job.src, threads=1) as reader:
            frames = reader.get_frames(np.arange(reader.num_frames))
            fps = reader.fps or DEFAULT_FPS
        out_hw = _target_hw(frames.shape[1:3], job.short_side, even=job.mode == "video")
        if out_hw != frames.shape[1:3]:
            frames = resized_crop(frames, (0, 0, *frames.shape[1:3]), out_hw)
        if job.mode == "video":
            from momentlens.data.encode import write_video

            write_video(final, frames, fps=fps, crf=job.crf, gop=job.gop, preset="veryfast")
        else:
            _write_frames(final, frames, fps, job.quality)
    except Exception as exc:
        return job.src, "failed", str(exc) or type(exc).__name__
    return job.src, "done", None


def _write_frames(final: Path, frames: np.ndarray, fps: float, quality: int) -> None:
    from PIL import Image

    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    tmp.mkdir(parents=True)
    try:
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(tmp / FRAME_PATTERN.format(i + 1), quality=quality)
        (tmp / FPS_FILE).write_text(f"{fps:g}\n")
        os.replace(tmp, final)  # a directory rename: the frames appear all at once
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def prepare_dataset(src_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                    mode: str = "video", short_side: int = 128, workers: int = 0,
                    gop: int = 8, crf: int = 23, quality: int = 90) -> dict:
    """Copy ``src_dir`` to ``out_dir`` in the same layout with faster-to-read videos.

    Returns a summary dict (also written to ``out_dir/prepare_report.json``):
    counts of ``done``/``skipped``/``failed`` videos and the failures with reasons.
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if mode not in ("video", "frames"):
        raise MomentlensError(f"--mode {mode!r}; choose video or frames")
    if not src.is_dir():
        raise MomentlensError(f"{src}: dataset folder not found")
    if out == src:
        raise MomentlensError("OUT_DIR must differ from DATA_DIR")
    if short_side < 16:
        raise MomentlensError(f"--short-side must be at least 16, got {short_side}")
    t0 = time.perf_counter()
    videos, meta = _scan(src, out)
    if not videos:
        raise MomentlensError(f"{src}: no videos found")
    (out / REPORT_FILE).unlink(missing_ok=True)  # incomplete until written again
    jobs = [_Job(str(src / v), str(out / v), mode, short_side, gop, crf, quality) for v in videos]
    status: dict[str, int] = {"done": 0, "skipped": 0, "failed": 0}
    failed = []
    for path, state, error in _map(_prepare_one, jobs, workers, "prepare", "video"):
        status[state] += 1
        if error:
            failed.append({"path": str(Path(path).relative_to(src)), "error": error})
    for rel in meta:
        write_bytes_atomic(out / rel, (src / rel).read_bytes())
    summary = {"source": str(src), "out": str(out), "mode": mode, "short_side": short_side,
               "gop": gop, "crf": crf, "videos": len(videos), **status, "failures": failed,
               "metadata_files": meta, "seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(out / REPORT_FILE, summary)
    return summary


def describe_prepare(summary: dict, limit: int = 20) -> str:
    lines = [f"prepared {summary['videos']} videos into {summary['out']} ({summary['mode']}, "
             f"short side {summary['short_side']}): {summary['done']} written, "
             f"{summary['skipped']} already there, {summary['failed']} failed "
             f"in {summary['seconds']} s"]
    lines += [f"  failed: {f['path']}: {f['error']}" for f in summary["failures"][:limit]]
    return "\n".join(lines)
