"""The two generic layouts: class folders (``folders``) and a two-column CSV (``csv``).

``folders``
    ``<root>/<split>/<class>/<video>``: class folders holding video files (or JPEG
    frame folders).
``csv``
    ``<root>/<split>.csv`` with two columns ``path,label`` (an optional ``path,label``
    header line is skipped); paths relative to ``root`` or absolute; labels are class
    names or integer indices.

Classes come from ``moments_categories.txt`` when present, otherwise from the class
folders of the ``training`` split (so that training and validation share one index
order), otherwise from the labels seen, sorted.
"""

from __future__ import annotations

from pathlib import Path

from momentlens.data.formats import is_frame_folder, is_video_file
from momentlens.data.layouts.common import (
    Parsed,
    Problem,
    VideoRecord,
    class_folders,
    csv_rows,
    is_int,
    listed_rows,
    no_split_id,
)
from momentlens.data.layouts.mit import CATEGORIES_FILE, load_classes

GENERIC_SPLITS = ("training", "validation", "testing")


def _known_classes(root: Path) -> list[str] | None:
    return load_classes(root) if (root / CATEGORIES_FILE).is_file() else None


def _is_header(lineno: int, fields: list[str]) -> bool:
    return lineno == 1 and [f.lower() for f in fields[:2]] == ["path", "label"]


def _classes_from_labels(csv_path: Path) -> list[str]:
    labels = {fields[1] for n, fields in csv_rows(csv_path, [])
              if len(fields) >= 2 and not _is_header(n, fields)}
    if labels and all(is_int(x) for x in labels):
        return [str(i) for i in range(max(int(x) for x in labels) + 1)]
    return sorted(labels)


def read_csv(root: Path, split: str, split_id: int | None, notes: list[str],
             problems: list[Problem]) -> Parsed:
    """``<root>/<split>.csv``: ``path,label`` rows."""
    no_split_id("csv", split_id)
    source = root / f"{split}.csv"
    classes = _known_classes(root) or _classes_from_labels(source)
    index = {c: i for i, c in enumerate(classes)}
    records: list[VideoRecord] = []
    for lineno, where, fields in listed_rows(source, notes, problems, "'path,label'",
                                             skip=_is_header):
        rel, label = fields[0], fields[1]
        idx = index.get(label)
        if idx is None and is_int(label) and int(label) < len(classes):
            idx = int(label)
        if idx is None:
            problems.append(Problem("unknown_label", where, f"unknown label {label!r}"))
            continue
        records.append(VideoRecord(root / rel, idx, {"source": source.name, "line": lineno,
                                                     "rel": rel}))
    return Parsed(records, classes, source)


def read_folders(root: Path, split: str, split_id: int | None, notes: list[str],
                 problems: list[Problem]) -> Parsed:
    """``<root>/<split>/<class>/<video>``."""
    no_split_id("folders", split_id)
    split_dir = root / split
    classes = _known_classes(root)
    if classes is None:
        ref = root / "training" if (root / "training").is_dir() else split_dir
        classes = class_folders(ref)
    index = {c: i for i, c in enumerate(classes)}
    records: list[VideoRecord] = []
    for name in class_folders(split_dir):
        if name not in index:
            problems.append(Problem("unknown_label", f"{split_dir / name}:0",
                                    f"class folder {name!r} is not a known class"))
            continue
        for entry in sorted((split_dir / name).iterdir()):
            if entry.name.startswith("."):
                continue
            if is_video_file(entry) or is_frame_folder(entry):
                records.append(VideoRecord(entry, index[name], {"rel": f"{name}/{entry.name}"}))
    return Parsed(records, classes, split_dir)


def csv_splits(root: Path) -> list[str]:
    return [s for s in GENERIC_SPLITS if (root / f"{s}.csv").is_file()]


def folder_splits(root: Path) -> list[str]:
    return [s for s in GENERIC_SPLITS if (root / s).is_dir()]
