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
outputs and deletes temporaries left by a killed run. Skipping is only right for the
same source and settings: they are recorded in ``OUT/.prepare_settings.json`` before
the first video, and a run into a folder prepared from another source or with other
settings (``--short-side``, ``--mode``, ``--gop``, ``--crf``, ``--quality``) stops at
once, naming what differs, instead of keeping the old copies under the new settings'
report. Small metadata files (CSV, TXT, JSON, YAML) are copied last, then
``prepare_report.json``; a copy is complete when that report exists.

The copy stays trainable: videos that cannot be read are not copied, the copy's lists
(``trainingSet.csv`` ..., ``<split>.csv``) keep only the rows of videos it holds, and
the videos left out are listed with their reasons (and the list rows dropped) in
``prepare_quarantine.jsonl`` and in the report. A write error (a full disk, no
permission) stops the run with one line naming the file and the cause; the partial
file is removed and a rerun resumes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
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
from momentlens.data.layout import LayoutError, available_splits, scan_split
from momentlens.data.transforms import resized_crop, short_side_hw
from momentlens.utils import (
    MomentlensError,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)

META_EXTENSIONS = (".csv", ".txt", ".json", ".yaml", ".yml")
REPORT_FILE = "prepare_report.json"
SETTINGS_FILE = ".prepare_settings.json"  # a dot-file: never taken for dataset metadata
QUARANTINE_FILE = "prepare_quarantine.jsonl"


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
    as videos; dot-files and ``out`` are skipped."""
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


@contextlib.contextmanager
def _writing(path: str | os.PathLike[str]) -> Iterator[None]:
    """Turn an OSError while writing ``path`` into one line naming it and the cause."""
    try:
        yield
    except OSError as exc:
        raise MomentlensError(f"{path}: cannot write ({exc.strerror or exc})") from exc


def _prepare_one(job: _Job) -> tuple[str, str, str | None]:
    """(source, status, error) with status ``done``, ``skipped``, ``failed`` (the source
    cannot be read: quarantined) or ``write_error`` (the copy cannot be written: fatal)."""
    final = _output_path(job)
    if final.exists():
        return job.src, "skipped", None
    try:
        with open_video(job.src, threads=1) as reader:
            frames = reader.get_frames(np.arange(reader.num_frames))
            fps = reader.fps or DEFAULT_FPS
        out_hw = _target_hw(frames.shape[1:3], job.short_side, even=job.mode == "video")
        if out_hw != frames.shape[1:3]:
            frames = resized_crop(frames, (0, 0, *frames.shape[1:3]), out_hw)
    except Exception as exc:
        return job.src, "failed", str(exc) or type(exc).__name__
    try:
        with _writing(final):
            _clean_stale(final)
            if job.mode == "video":
                from momentlens.data.encode import write_video

                write_video(final, frames, fps=fps, crf=job.crf, gop=job.gop, preset="veryfast")
            else:
                _write_frames(final, frames, fps, job.quality)
    except MomentlensError as exc:
        return job.src, "write_error", str(exc)
    except Exception as exc:  # the encoder refused these frames: a property of the source
        return job.src, "failed", f"cannot re-encode: {exc or type(exc).__name__}"
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

    Returns a summary dict (also written to ``out_dir/prepare_report.json``): counts of
    ``done``/``skipped``/``failed`` videos, the failures with reasons and the list rows
    that named them (also in ``prepare_quarantine.jsonl``). Raises
    :class:`MomentlensError` (one line) when the copy cannot be written.
    """
    src, out = Path(src_dir).resolve(), Path(out_dir).resolve()
    if mode not in ("video", "frames"):
        raise MomentlensError(f"--mode {mode!r}; choose video or frames")
    _check_folders(src, out)
    if short_side < 16:
        raise MomentlensError(f"--short-side must be at least 16, got {short_side}")
    t0 = time.perf_counter()
    videos, meta = _scan(src, out)
    if not videos:
        raise MomentlensError(f"{src}: no videos found")
    settings = _settings(src, mode, short_side, gop, crf, quality)
    if not _same_settings(out, settings):  # a new folder (or an unrecorded one): record
        with _writing(out / SETTINGS_FILE):
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / SETTINGS_FILE, settings)
    with _writing(out / REPORT_FILE):
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_FILE).unlink(missing_ok=True)  # incomplete until written again
    jobs = [_Job(str(src / v), str(out / v), mode, short_side, gop, crf, quality) for v in videos]
    status: dict[str, int] = {"done": 0, "skipped": 0, "failed": 0}
    failed: dict[Path, str] = {}
    # closing(): on a write error, the pool stops (work not started is cancelled, work
    # in flight finishes and cleans up) before the error reaches the user.
    with contextlib.closing(_map(_prepare_one, jobs, workers, "prepare", "video")) as results:
        for path, state, error in results:
            if state == "write_error":
                raise MomentlensError(error)
            status[state] += 1
            if error:
                failed[Path(path)] = error
    lists, quarantine = _trainable_lists(src, out, failed)
    _write_metadata(src, out, meta, lists, quarantine)
    summary = {"source": str(src), "out": str(out), "mode": mode, "short_side": short_side,
               "gop": gop, "crf": crf, "videos": len(videos), **status,
               "failures": [q for q in quarantine if q["kind"] == "unreadable"],
               "missing": [q for q in quarantine if q["kind"] == "missing"],
               "rows_dropped": {name: n for name, (_, n) in lists.items() if n},
               "quarantine_file": QUARANTINE_FILE if quarantine else None,
               "metadata_files": meta, "seconds": round(time.perf_counter() - t0, 1)}
    with _writing(out / REPORT_FILE):
        write_json_atomic(out / REPORT_FILE, summary)
    return summary


def _check_folders(src: Path, out: Path) -> None:
    """The source exists, and the copy is neither it, nor inside it, nor around it."""
    if not src.is_dir():
        raise MomentlensError(f"{src}: dataset folder not found")
    if out == src:
        raise MomentlensError("OUT_DIR must differ from DATA_DIR")
    if out.is_relative_to(src) or src.is_relative_to(out):
        # Inside the source, the copy would be read as part of it (a class folder of a
        # folder layout, the next prepare's input); around it, the source as part of
        # the copy.
        inner, outer = (out, src) if out.is_relative_to(src) else (src, out)
        raise MomentlensError(f"{inner} is inside {outer}: the copy and the dataset would "
                              "mix; choose an OUT_DIR outside DATA_DIR and not around it")


def _settings(src: Path, mode: str, short_side: int, gop: int, crf: int, quality: int
              ) -> dict:
    """What the copies depend on (the report's keys); the other mode's options do not."""
    extra = {"gop": gop, "crf": crf} if mode == "video" else {"quality": quality}
    return {"source": str(src), "mode": mode, "short_side": short_side, **extra}


def _same_settings(out: Path, settings: dict) -> bool:
    """Stop when ``out`` was prepared (in full or in part) from another source or with
    other settings: its finished copies would be skipped and kept as they are. Compared
    with the settings file of an earlier run, else its report; neither (a new folder, or
    one from a version that kept no record): nothing to compare. True when the settings
    file already records exactly ``settings`` (nothing to write: a rerun on a full disk
    reaches the file it failed on)."""
    for name in (SETTINGS_FILE, REPORT_FILE):
        try:
            old = json.loads((out / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not isinstance(old, dict):
            continue
        differ = [k for k in settings if k in old and old[k] != settings[k]]
        if differ:
            was = ", ".join(f"{k} {old[k]}" for k in differ)
            now = ", ".join(f"{k} {settings[k]}" for k in differ)
            raise MomentlensError(
                f"{out} holds a copy prepared with {was}; this run asks for {now}, and "
                "would keep the videos already there as they are. Choose another OUT_DIR, "
                "or delete that folder first")
        return name == SETTINGS_FILE and old == settings
    return False


def _trainable_lists(src: Path, out: Path, failed: dict[Path, str]
                     ) -> tuple[dict[str, tuple[bytes, int]], list[dict]]:
    """The copy's list files (relative name -> (content, rows dropped)) without the rows
    of videos it does not hold, and the quarantine entries (one per video left out)."""
    entries = {path: {"path": str(path.relative_to(src)), "kind": "unreadable",
                      "error": error, "listed_in": []} for path, error in sorted(failed.items())}
    lists: dict[str, tuple[bytes, int]] = {}
    for name in available_splits(src):
        try:
            split, _ = scan_split(src, name)
        except LayoutError:
            continue  # unparsable lists are copied as they are: the source fails alike
        if split.layout == "folders":
            _mirror_class_folders(src / split.name, out / split.name)
            continue
        if split.layout not in ("mit", "mmit", "csv") or split.list_file is None:
            # JSON lists (SSv2) and multi-split or shared files (Kinetics, UCF101, HMDB51)
            # are copied unchanged; the quarantine file still names what was left out.
            continue
        list_file = split.list_file
        missing = {id(r) for r in split.missing}
        drop = set()
        for rec in split.records:
            entry = entries.get(rec.path)
            if entry is None and id(rec) in missing:
                entry = entries.setdefault(rec.path, {
                    "path": _relative(rec.path, src), "kind": "missing",
                    "error": "not found in the source", "listed_in": []})
            if entry is not None and "line" in rec.extra:
                drop.add(rec.extra["line"])
                entry["listed_in"].append(f"{list_file.name}:{rec.extra['line']}")
        lists[str(list_file.relative_to(src))] = (_without_lines(list_file, drop), len(drop))
    return lists, list(entries.values())


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:  # a list row pointing outside the dataset folder
        return str(path)


def _without_lines(path: Path, drop: set[int]) -> bytes:
    """``path``'s bytes without the given 1-based lines (numbered as the layout reader
    numbers them: CR, LF and CRLF each end a line); everything else byte for byte."""
    data = path.read_bytes()
    if not drop:
        return data
    lines = re.findall(rb"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", data)
    return b"".join(line for number, line in enumerate(lines, start=1) if number not in drop)


def _mirror_class_folders(src_split: Path, out_split: Path) -> None:
    # A class folder whose videos all failed must still exist: the class folders of the
    # training split define the class list and its order.
    for entry in src_split.iterdir():
        if entry.is_dir() and not entry.name.startswith(".") and not is_frame_folder(entry):
            with _writing(out_split / entry.name):
                (out_split / entry.name).mkdir(parents=True, exist_ok=True)


def _write_metadata(src: Path, out: Path, meta: list[str],
                    lists: dict[str, tuple[bytes, int]], quarantine: list[dict]) -> None:
    for rel in meta:
        data = lists[rel][0] if rel in lists else (src / rel).read_bytes()
        with _writing(out / rel):
            write_bytes_atomic(out / rel, data)
    with _writing(out / QUARANTINE_FILE):
        if quarantine:
            write_text_atomic(out / QUARANTINE_FILE,
                              "".join(json.dumps(q) + "\n" for q in quarantine))
        else:
            (out / QUARANTINE_FILE).unlink(missing_ok=True)


def describe_prepare(summary: dict, limit: int = 20) -> str:
    lines = [f"prepared {summary['videos']} videos into {summary['out']} ({summary['mode']}, "
             f"short side {summary['short_side']}): {summary['done']} written, "
             f"{summary['skipped']} already there, {summary['failed']} failed "
             f"in {summary['seconds']} s"]
    lines += [f"  failed: {f['path']}: {f['error']}" for f in summary["failures"][:limit]]
    if len(summary["failures"]) > limit:
        lines.append(f"  ... and {len(summary['failures']) - limit} more")
    if summary.get("missing"):
        lines.append(f"  {len(summary['missing'])} listed videos not found in the source")
    dropped = summary.get("rows_dropped") or {}
    if dropped:
        rows = ", ".join(f"{n} from {name}" for name, n in dropped.items())
        lines.append(f"  list rows of videos left out removed from the copy ({rows}); "
                     f"see {Path(summary['out']) / QUARANTINE_FILE}")
    return "\n".join(lines)
