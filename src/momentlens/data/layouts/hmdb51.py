"""HMDB51 (``hmdb51``), three numbered splits.

``testTrainMulti_7030_splits/`` (or the dataset folder itself) holds one file per class
and split, ``<class>_test_split<N>.txt`` (N = 1, 2, 3: ``--split-id``), with
``<video>.avi <marker>`` lines: 1 = training, 2 = test, 0 = not used in this split.
Videos are ``.avi`` under ``<class>/`` (or ``hmdb51_org/<class>/``). The classes are
the class names of the split files, sorted. Split ``training`` is marker 1,
``validation`` (alias ``test``) marker 2.
"""

from __future__ import annotations

import re
from pathlib import Path

from momentlens.data.layouts.common import (
    LayoutError,
    Parsed,
    Problem,
    VideoRecord,
    first_listing,
    numbered_split,
    text_rows,
)

NAME = "hmdb51"
LIST_DIR = "testTrainMulti_7030_splits"
VIDEO_DIRS = ("hmdb51_org", ".")
MARKERS = {"training": "1", "validation": "2"}
_SPLIT_FILE = re.compile(r"^(?P<cls>.+)_test_split(?P<n>[123])\.txt$")


def _split_files(root: Path) -> dict[int, dict[str, Path]]:
    """Split number -> class -> its split file."""
    found: dict[int, dict[str, Path]] = {}
    for folder in (root / LIST_DIR, root):
        if folder.is_dir():
            for path in sorted(folder.glob("*_test_split*.txt")):
                m = _SPLIT_FILE.match(path.name)
                if m:
                    found.setdefault(int(m["n"]), {}).setdefault(m["cls"], path)
        if found:
            break
    return found


def detect(root: Path) -> bool:
    return bool(_split_files(root))


def splits(root: Path) -> list[str]:
    return list(MARKERS) if detect(root) else []


def _video_dir(root: Path, classes: list[str]) -> Path:
    for name in VIDEO_DIRS:
        if any((root / name / c).is_dir() for c in classes):
            return (root / name).resolve()
    return root


def _rows(path: Path, cls: str, marker: str, notes: list[str], problems: list[Problem]
          ) -> list[tuple[int, str]]:
    """(line, video file name) of the rows of ``path`` carrying ``marker``."""
    out: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for lineno, fields in text_rows(path, notes):
        where = f"{path}:{lineno}"
        if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
            problems.append(Problem("malformed", where, "expected '<video>.avi <0|1|2>', got "
                                    f"{' '.join(fields)!r}"))
        elif first_listing(seen, fields[0], lineno, where, problems) and fields[1] == marker:
            out.append((lineno, fields[0]))
    return out


def read(root: Path, split: str, split_id: int | None, notes: list[str],
         problems: list[Problem]) -> Parsed:
    """Records marked 1 (``training``) or 2 (``validation``) in split N's class files."""
    number = numbered_split(NAME, split_id)
    if split not in MARKERS:
        raise LayoutError(f"hmdb51 has splits training (marker 1) and validation (marker "
                          f"2), not {split!r}")
    every = _split_files(root)
    classes = sorted({c for files in every.values() for c in files})
    files = every.get(number, {})
    absent = [c for c in classes if c not in files]
    if absent:
        raise LayoutError(f"{root}: no split-{number} file for {len(absent)} classes, e.g. "
                          f"{absent[0]}_test_split{number}.txt")
    videos = _video_dir(root, classes)
    records: list[VideoRecord] = []
    for label, cls in enumerate(classes):
        for lineno, name in _rows(files[cls], cls, MARKERS[split], notes, problems):
            extra = {"source": files[cls].name, "line": lineno, "rel": f"{cls}/{name}"}
            records.append(VideoRecord(videos / cls / name, label, extra))
    source = files[classes[0]].parent if classes else root
    return Parsed(records, classes, source, split_id=number)
