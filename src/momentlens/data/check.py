"""``momentlens check`` (probe every video, report problems) and ``momentlens stats``
(per-channel pixel mean and std over a sample of videos, for mean subtraction)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from momentlens.data.decode import open_video
from momentlens.data.formats import find_videos
from momentlens.data.layouts import LAYOUTS, available_splits, no_split_message, scan_split
from momentlens.data.sampling import segment_indices
from momentlens.data.seek import shown_pts
from momentlens.utils import MomentlensError, progress

# Problem kinds a video can have, in report order.
VIDEO_PROBLEMS = ("unreadable", "zero_frames", "too_short", "odd_fps", "small_size")
# Frame rates cameras and broadcasters use; ``odd_fps`` is a rate far from all of them.
STANDARD_FPS = (23.976, 24.0, 25.0, 29.97, 30.0, 50.0, 59.94, 60.0)
FPS_TOLERANCE = 0.002  # relative: 30 +- 0.06 fps
PLAIN = "videos"  # the one "split" of a plain folder of videos (or a single file)


def fps_is_odd(fps: float, expected: float | None = None) -> bool:
    """Whether ``fps`` is far (more than :data:`FPS_TOLERANCE`, relative) from
    ``expected``, or, without one, from every rate of :data:`STANDARD_FPS`."""
    rates = (expected,) if expected else STANDARD_FPS
    return all(abs(fps - r) > FPS_TOLERANCE * r for r in rates)


def frame_rate_varies(path: str | os.PathLike[str], spread: float = 0.5) -> bool:
    """Whether the gaps between a video's frame timestamps vary by more than ``spread``
    of the typical gap (variable frame rate). Demuxes only: nothing is decoded. Packets
    that are never shown (an edit list's, or those before the first keyframe of a file
    cut at another packet: :func:`~momentlens.data.seek.shown_pts`) do not count."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = [(p.pts, bool(p.is_keyframe), bool(getattr(p, "is_discard", False)))
                       for p in container.demux(stream) if p.pts is not None and p.size]
    except Exception:  # not a container (a frame folder) or unreadable: no timestamps
        return False
    pts = sorted(shown_pts(packets))
    gaps = np.diff(np.unique(pts))
    if len(gaps) < 3:
        return False
    typical = float(np.median(gaps))
    return bool(np.abs(gaps[1:-1] - typical).max(initial=0) > spread * typical)


def probe_video(path: str | os.PathLike[str], backend: str = "auto") -> dict:
    """Open ``path`` and decode it to the end (only the first and last frames are
    converted to RGB). Returns ``{path, num_frames, header_frames, fps, height, width,
    error}``; ``error`` is ``None`` for a readable video, else the reason."""
    out: dict = {"path": str(path), "num_frames": 0, "header_frames": 0, "fps": 0.0,
                 "height": 0, "width": 0, "variable_fps": False, "error": None}
    try:
        with open_video(path, backend, threads=1) as reader:
            out["header_frames"] = reader.num_frames
            out.update(fps=round(reader.fps, 3), height=reader.size[0], width=reader.size[1])
            reader.get_frames([0, reader.num_frames - 1])
            out["num_frames"] = reader.num_frames  # corrected if the header overstated it
        out["variable_fps"] = Path(path).is_file() and frame_rate_varies(path)
    except Exception as exc:  # every failure is data for the report, never a crash
        out["error"] = str(exc) or type(exc).__name__
    return out


def _map(fn: Callable, items: Sequence, workers: int, desc: str, unit: str) -> Iterable:
    """``map(fn, items)`` over a process pool with a progress bar, results in order.
    A caller that stops early (an error) cancels the work not yet started."""
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(items) < 2:
        return progress(map(fn, items), total=len(items), desc=desc, unit=unit)
    pool = ProcessPoolExecutor(max_workers=workers)
    chunk = max(1, min(32, len(items) // (workers * 8)))
    results = pool.map(fn, items, chunksize=chunk)

    def gen() -> Iterable:
        try:
            yield from progress(results, total=len(items), desc=desc, unit=unit)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    return gen()


def _classify(p: dict, min_frames: int, min_size: int, fps: float | None) -> list[str]:
    if p["error"]:
        return ["zero_frames" if "no frames" in p["error"] else "unreadable"]
    kinds = []
    if p["num_frames"] < min_frames:
        kinds.append("too_short")
    if p.get("variable_fps") or (p["fps"] > 0 and fps_is_odd(p["fps"], fps)):
        kinds.append("odd_fps")
    if min(p["height"], p["width"]) < min_size:
        kinds.append("small_size")
    return kinds


def check_dataset(root: str | os.PathLike[str], splits: Sequence[str] | None = None,
                  workers: int = 0, min_frames: int = 16, min_size: int = 112,
                  fps: float | None = None, backend: str = "auto", layout: str = "auto",
                  split_id: int | None = None) -> dict:
    """Probe every video of ``splits`` (default: all found) in parallel.

    ``layout``/``split_id``: as for :func:`momentlens.data.layouts.load_split`; the
    report names the layout used (``report["layout"]``), the class count and, per
    split, the videos listed, the missing ones (``missing_videos``) and the classes
    with no video listed (``classes_without_videos``).

    ``root`` may also be a plain folder of videos (no layout's files, searched
    recursively) or a single video file: then every video is probed, with no labels.

    Problems: layout/label problems (with ``file:line``), missing videos (except where
    the layout says that is normal: Kinetics, whose missing videos are counted, listed
    and warned about), and per video ``unreadable``, ``zero_frames``, ``too_short``
    (< ``min_frames`` decodable frames), ``odd_fps`` (a rate far from ``fps`` or, by
    default, from every rate of :data:`STANDARD_FPS`, or one that varies within the
    video), ``small_size`` (short side < ``min_size`` pixels, the crop). Every video is probed, so every unreadable one is listed (unreadable ones
    first). Warnings (``report["warnings"]``, not problems): classes with no usable
    training videos and classes with none in validation. Returns the report dict
    (JSON-ready); ``report["ok"]`` is False when a problem was found.
    """
    root = Path(root)
    report: dict = {"root": str(root), "layout": None, "classes": 0, "splits": {},
                    "videos": [], "label_problems": [], "warnings": [],
                    "settings": {"min_frames": min_frames, "min_size": min_size,
                                 "fps": fps or list(STANDARD_FPS)}}
    plain = plain_videos(root, layout)
    if plain is not None:
        paths, scanned = [(PLAIN, p, ()) for p in plain], []
        report["splits"][PLAIN] = {"videos": len(plain), "missing": 0, "notes": [
            f"no dataset layout here: checked the {len(plain)} video file(s) themselves "
            "(no splits, no labels)"]}
    else:
        splits = list(splits or available_splits(root, layout))
        if not splits:
            raise MomentlensError(no_split_message(root))
        paths, scanned = _scan_splits(root, splits, layout, split_id, report)
    probes = list(_map(probe_video, [p for _, p, _ in paths], workers, "check", "video"))
    counts: Counter = Counter()
    for (split_name, _, _), probe in zip(paths, probes):
        kinds = _classify(probe, min_frames, min_size, fps)
        counts.update(kinds)
        if kinds or probe["header_frames"] != probe["num_frames"]:
            report["videos"].append({"split": split_name, "problems": kinds, **probe})
    report["videos"].sort(key=lambda v: not v["error"])  # unreadable first, order kept
    readable = Counter((s, label) for (s, _, labels), p in zip(paths, probes)
                       if not p["error"] for label in labels)
    report["warnings"] += _class_warnings(scanned, readable)
    counts.update(p["kind"] for p in report["label_problems"])
    report["counts"] = dict(counts)
    report["probed"] = len(probes)
    report["ok"] = not counts
    return report


def plain_videos(root: Path, layout: str = "auto") -> list[Path] | None:
    """The videos of ``root`` when it is a single video file, or a folder in which no
    layout finds a split but video files are found (recursively); else ``None``."""
    if root.is_file():
        return [root]
    if not root.exists():
        raise MomentlensError(f"{root}: no such file or folder")
    if layout != "auto" or not root.is_dir() or available_splits(root, layout):
        return None
    return find_videos(root) or None


def _scan_splits(root: Path, splits: Sequence[str], layout: str, split_id: int | None,
                 report: dict) -> tuple[list[tuple[str, Path, tuple[int, ...]]], list]:
    """Read each split into ``report`` (layout, classes, per-split counts, problems);
    returns (split, path, labels) of every video found on disk, and the splits."""
    paths: list[tuple[str, Path, tuple[int, ...]]] = []
    scanned = []
    for name in splits:
        split, problems = scan_split(root, name, layout, split_id)
        scanned.append(split)
        missing = {id(r) for r in split.missing}
        normal = LAYOUTS[split.layout].missing != "error"  # e.g. Kinetics: deleted videos
        listed = Counter(label for r in split.records for label in r.labels)
        report.update(layout=split.layout, classes=len(split.classes))
        report["splits"][split.name] = {
            "layout": split.layout, "split_id": split.split_id,
            "multi_label": split.multi_label, "videos": len(split.records),
            "classes": len(split.classes), "missing": len(split.missing),
            "missing_videos": [_rel(r.path, split.root) for r in split.missing],
            "classes_without_videos": [c for i, c in enumerate(split.classes) if not listed[i]],
            "notes": split.notes}
        report["label_problems"] += [{"kind": p.kind, "where": p.where, "message": p.message}
                                     for p in problems if not (normal and p.kind == "missing")]
        if normal and split.missing:
            report["warnings"].append({
                "kind": "missing_videos", "split": split.name, "class": None,
                "message": f"{len(split.missing)} of {len(split.records)} listed {split.name} "
                           f"videos are missing (normal for {split.layout}: they are skipped)"})
        paths += [(split.name, r.path, r.labels) for r in split.records if id(r) not in missing]
    return paths, scanned


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


# Splits whose classes must all have videos: training (to learn them) and validation
# (to measure them).
_COVERED_SPLITS = {"training": "training", "validation": "validation"}


def _class_warnings(splits: Sequence, readable: Counter) -> list[dict]:
    """A warning per class of the training or validation split without a readable video
    there (no rows at all, or only missing or unreadable files)."""
    warnings = []
    for split in splits:
        what = _COVERED_SPLITS.get(split.name)
        if what is None:
            continue
        listed = Counter(label for r in split.records for label in r.labels)
        for index, name in enumerate(split.classes):
            if readable[(split.name, index)]:
                continue
            detail = (f"{listed[index]} listed, none readable" if listed[index]
                      else "none listed")
            warnings.append({"kind": f"class_without_{what}_videos", "split": split.name,
                             "class": name, "message": f"class {name!r} has no {what} "
                             f"videos ({detail})"})
    return warnings


def describe_check(report: dict, limit: int = 20) -> str:
    """A plain-text summary of a :func:`check_dataset` report."""
    per_split = ", ".join(f"{k}: {v['videos']}" for k, v in report["splits"].items())
    lines = [f"checked {report['probed']} videos in {report['root']} ({per_split})"]
    lines += _layout_lines(report)
    for split in report["splits"].values():
        lines += [f"  note: {n}" for n in split["notes"]]
    warnings = report.get("warnings", [])
    lines += [f"warning: {w['message']}" for w in warnings[:limit]]
    if len(warnings) > limit:
        lines.append(f"  ... and {len(warnings) - limit} more warnings (see the JSON report)")
    if report["ok"]:
        return "\n".join(lines + ["no problems found"])
    lines.append("problems: " + ", ".join(f"{k} {v}" for k, v in sorted(report["counts"].items())))
    for p in report["label_problems"][:limit]:
        lines.append(f"  {p['kind']}: {p['where']}: {p['message']}")
    bad = [v for v in report["videos"] if v["problems"]]
    for v in bad[:limit]:
        detail = (v["error"] or "").removeprefix(f"{v['path']}: ") or (
            f"{v['num_frames']} frames, {v['fps']} fps"
            f"{' (varies within the video)' if v.get('variable_fps') else ''}, "
            f"{v['width']}x{v['height']}")
        lines.append(f"  {','.join(v['problems'])}: {v['path']}: {detail}")
    if len(bad) > limit:
        lines.append(f"  ... and {len(bad) - limit} more videos (see the JSON report)")
    return "\n".join(lines)


def _layout_lines(report: dict) -> list[str]:
    """What was read: the layout, the classes, and per split the videos listed, missing
    and the classes with none."""
    if not report.get("layout"):
        return []
    first = next(iter(report["splits"].values()), {})
    kind = ", multi-label" if first.get("multi_label") else ""
    number = f", split {first['split_id']}" if first.get("split_id") else ""
    lines = [f"layout: {report['layout']}{number}{kind}; {report['classes']} classes"]
    for name, split in report["splits"].items():
        line = f"  {name}: {split['videos']} videos listed, {split['missing']} missing"
        empty = split.get("classes_without_videos", [])
        if empty:
            shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
            line += f", {len(empty)} classes with no videos ({shown})"
        lines.append(line)
        lines += [f"    missing: {p}" for p in split.get("missing_videos", [])[:5]]
    return lines


# ----------------------------------------------------------------------------- stats


def _video_moments(args: tuple[str, int]) -> tuple[np.ndarray, np.ndarray, int] | None:
    path, k = args
    try:
        with open_video(path, threads=1) as reader:
            frames = reader.get_frames(segment_indices(reader.num_frames, k))
    except Exception:
        return None
    x = frames.reshape(-1, 3).astype(np.float64)
    return x.sum(0), (x * x).sum(0), x.shape[0]


def dataset_stats(root: str | os.PathLike[str], split: str = "training", max_videos: int = 500,
                  frames_per_video: int = 8, workers: int = 0, layout: str = "auto",
                  split_id: int | None = None) -> dict:
    """Per-channel (RGB) pixel mean and std over ``frames_per_video`` evenly spaced
    frames of up to ``max_videos`` videos spread evenly over the split (deterministic).
    Values on ``[0, 255]`` (``mean_255``, ``std_255``; the ``dataset`` normalisation
    preset takes ``mean_255``) and on ``[0, 1]`` (``mean_01``, ``std_01``)."""
    paths, where, split = _stats_videos(Path(root), split, layout, split_id)
    if not paths:
        raise MomentlensError(f"{root}: split {split!r} has no readable videos")
    pick = np.unique(np.linspace(0, len(paths) - 1, min(max_videos, len(paths))).astype(int))
    jobs = [(str(paths[i]), frames_per_video) for i in pick]
    total, total_sq, n, used = np.zeros(3), np.zeros(3), 0, 0
    for res in _map(_video_moments, jobs, workers, "stats", "video"):
        if res is not None:
            total += res[0]
            total_sq += res[1]
            n += res[2]
            used += 1
    if n == 0:
        raise MomentlensError(f"{root}: none of the {len(jobs)} sampled videos could be read")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean * mean, 0.0))
    return {"root": where, "split": split, "videos": used, "skipped": len(jobs) - used,
            "frames_per_video": frames_per_video, "pixels": int(n),
            "mean_255": [round(float(v), 4) for v in mean],
            "std_255": [round(float(v), 4) for v in std],
            "mean_01": [round(float(v) / 255, 6) for v in mean],
            "std_01": [round(float(v) / 255, 6) for v in std]}


def _stats_videos(root: Path, split: str, layout: str, split_id: int | None
                  ) -> tuple[list[Path], str, str]:
    """(video paths, root, split name) for :func:`dataset_stats`: a split's videos on
    disk, or those of a plain folder or single file (:func:`plain_videos`)."""
    plain = plain_videos(root, layout)
    if plain is not None:
        return plain, str(root), PLAIN
    if root.is_dir() and not available_splits(root, layout):
        raise MomentlensError(no_split_message(root))
    sp, _ = scan_split(root, split, layout, split_id)
    missing = {id(r) for r in sp.missing}
    return [r.path for r in sp.records if id(r) not in missing], str(sp.root), sp.name


def describe_stats(stats: dict) -> str:
    return (f"{stats['split']}: {stats['videos']} videos x {stats['frames_per_video']} frames "
            f"({stats['skipped']} unreadable skipped)\n"
            f"  mean on [0,255]: {', '.join(f'{v:.4f}' for v in stats['mean_255'])}\n"
            f"  std  on [0,255]: {', '.join(f'{v:.4f}' for v in stats['std_255'])}\n"
            f"  mean on [0,1]:   {', '.join(f'{v:.6f}' for v in stats['mean_01'])}")
