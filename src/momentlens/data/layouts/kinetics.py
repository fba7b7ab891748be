"""Kinetics-400/600/700 (``kinetics``).

Annotation CSVs with a header ``label,youtube_id,time_start,time_end,split`` (the
CVDF release's ``annotations/train.csv`` and ``val.csv``; older names such as
``kinetics_400_train.csv`` or ``kinetics-600_val.csv`` work too, in the dataset folder
or in ``annotations/``). Class names contain spaces and parentheses; the classes are
the training list's labels, sorted (the order of the published models).

Videos are named ``<youtube_id>_<time_start:06d>_<time_end:06d>.<ext>``, either flat
in ``train/`` and ``val/`` (``training/``, ``validation/``) or under
``<split>/<label>/`` (the label as written, or with spaces as ``_``). Each split
folder is indexed once. Releases lack a few percent of the listed videos (YouTube
deletions): missing videos are counted and listed, and skipped by default.
"""

from __future__ import annotations

import os
from pathlib import Path

from momentlens.data.formats import is_frame_folder, is_video_file
from momentlens.data.layouts.common import (
    LayoutError,
    Parsed,
    Problem,
    VideoRecord,
    csv_rows,
    no_split_id,
)

NAME = "kinetics"
HEADER = ("label", "youtube_id", "time_start", "time_end")
# What a missing listed video means here: normal (deleted from YouTube), so skipped.
MISSING = "skip"
VIDEO_DIRS = {"training": ("train", "training"), "validation": ("val", "validation", "valid"),
              "testing": ("test", "testing")}
_NAME_HINTS = {"training": ("train",), "validation": ("val",), "testing": ("test",)}


def _is_annotation(path: Path) -> bool:
    """Whether the first line of ``path`` is the Kinetics header (only it is read)."""
    with open(path, "rb") as fh:
        head = fh.readline(4096).decode("utf-8", "replace").lstrip("\ufeff")
    fields = [f.strip().strip('"').lower() for f in head.split(",")]
    return tuple(fields[:4]) == HEADER


def annotation_files(root: Path) -> dict[str, Path]:
    """Split -> its annotation CSV; LayoutError when two files claim one split."""
    found: dict[str, Path] = {}
    for folder in (root, root / "annotations"):
        if not folder.is_dir():
            continue
        for path in sorted(folder.glob("*.csv")):
            if not _is_annotation(path):
                continue
            stem = path.stem.lower()
            for split, hints in _NAME_HINTS.items():
                if any(h in stem for h in hints):
                    if split in found:
                        raise LayoutError(f"{root}: two Kinetics lists for split {split!r}: "
                                          f"{found[split]} and {path}; keep one")
                    found[split] = path
                    break
    return found


def detect(root: Path) -> bool:
    return bool(annotation_files(root))


def splits(root: Path) -> list[str]:
    return [s for s in ("training", "validation") if s in annotation_files(root)]


def _columns(source: Path, notes: list[str]) -> tuple[dict[str, int], list]:
    rows = list(csv_rows(source, notes))
    header = [f.lower() for f in rows[0][1]] if rows else []
    return {name: header.index(name) for name in HEADER if name in header}, rows[1:]


def _video_index(split_dir: Path) -> dict[str, list[Path]]:
    """File stem -> paths, for every video (or frame folder) in ``split_dir`` and its
    class folders."""
    index: dict[str, list[Path]] = {}
    if not split_dir.is_dir():
        return index
    for entry in os.scandir(split_dir):
        path = Path(entry.path)
        if entry.is_dir() and not is_frame_folder(path):
            for sub in os.scandir(path):
                if is_video_file(sub.name) or (sub.is_dir() and is_frame_folder(sub.path)):
                    index.setdefault(Path(sub.name).stem, []).append(Path(sub.path))
        elif is_video_file(entry.name) or is_frame_folder(path):
            index.setdefault(path.stem, []).append(path)
    return index


def _clip_name(fields: list[str], col: dict[str, int]) -> str | None:
    try:
        start = int(float(fields[col["time_start"]]))
        end = int(float(fields[col["time_end"]]))
    except (ValueError, IndexError):
        return None
    return f"{fields[col['youtube_id']]}_{start:06d}_{end:06d}"


def _classes(files: dict[str, Path], split: str) -> list[str]:
    col, rows = _columns(files.get("training", files[split]), [])
    if "label" not in col:
        return []
    return sorted({f[col["label"]] for _, f in rows if len(f) > col["label"] and f[col["label"]]})


def _locate(name: str, label: str, found: list[Path], split_dir: Path, where: str,
            problems: list[Problem]) -> Path:
    if len(found) > 1:
        problems.append(Problem("duplicate", where, f"{name} found {len(found)} times: "
                                f"{', '.join(str(p) for p in found[:3])}"))
    if found and found[0].parent != split_dir and found[0].parent.name not in (
            label, label.replace(" ", "_")):
        problems.append(Problem("unknown_label", where, f"{name} is listed as {label!r} but "
                                f"lies in the class folder {found[0].parent.name!r}"))
    return found[0] if found else split_dir / f"{name}.mp4"


def read(root: Path, split: str, split_id: int | None, notes: list[str],
         problems: list[Problem]) -> Parsed:
    """Records of one split's annotation CSV, matched to the videos found on disk."""
    no_split_id(NAME, split_id)
    files = annotation_files(root)
    if split not in files:
        raise LayoutError(f"{root}: no Kinetics list for split {split!r} (found "
                          f"{', '.join(str(p.name) for p in files.values())})")
    source = files[split]
    classes = _classes(files, split)
    index = {c: i for i, c in enumerate(classes)}
    col, rows = _columns(source, notes)
    if "label" not in col:
        raise LayoutError(f"{source}:1: no 'label' column (a test list without labels?)")
    split_dir = next((root / d for d in VIDEO_DIRS.get(split, (split,)) if (root / d).is_dir()),
                     root / VIDEO_DIRS.get(split, (split,))[0])
    on_disk = _video_index(split_dir)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for lineno, fields in rows:
        where = f"{source}:{lineno}"
        name = _clip_name(fields, col) if len(fields) >= len(HEADER) else None
        if name is None:
            problems.append(Problem("malformed", where, "expected 'label,youtube_id,time_start,"
                                    f"time_end,split', got {','.join(fields)!r}"))
            continue
        label = fields[col["label"]]
        if name in seen:
            problems.append(Problem("duplicate", where, f"{name} already listed on line {seen[name]}"))
            continue
        seen[name] = lineno
        if label not in index:
            problems.append(Problem("unknown_label", where, f"label {label!r} is not a class "
                                    "of the training list"))
            continue
        path = _locate(name, label, on_disk.get(name, []), split_dir, where, problems)
        records.append(VideoRecord(path, index[label], {"source": source.name, "line": lineno,
                                                        "rel": name}))
    return Parsed(records, classes, source)
