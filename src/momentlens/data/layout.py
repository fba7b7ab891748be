"""Dataset layouts on disk -> a list of :class:`VideoRecord` (path, label index, extras).

Four layouts are understood (``layout="auto"`` tries them in this order):

``mit``
    The Moments-in-Time release: ``moments_categories.txt`` (``name,index`` per line;
    the index order is the model's output order; names may contain ``+``),
    ``trainingSet.csv`` / ``validationSet.csv`` without header, rows
    ``<class>/<file>.mp4,<label>,<agree>,<disagree>`` where ``<label>`` is the class
    name (as released) or its integer index, and the videos under ``training/`` and
    ``validation/``.
``csv``
    ``<root>/<split>.csv`` with two columns ``path,label`` (an optional ``path,label``
    header line is skipped); paths relative to ``root`` or absolute; labels are class
    names or integer indices.
``folders``
    ``<root>/<split>/<class>/<video>``: class folders holding video files.

In every layout a video may instead be a folder of extracted JPEG frames
(``<video>/image_00001.jpg ...``, as in the paper and 3D-ResNets-PyTorch): a CSV row
``a/b.mp4`` resolves to the folder ``a/b`` when ``a/b.mp4`` does not exist but the
folder does (this is what ``momentlens prepare --mode frames`` writes).

Classes come from ``moments_categories.txt`` when present (any layout), otherwise
from the class folders of the ``training`` split (so that training and validation
share one index order), otherwise from the labels seen, sorted.

Problems are collected with file and line number and raised together as one
:class:`LayoutError`: unknown labels, malformed rows, duplicated rows, an empty
split, and (unless ``missing`` says otherwise) missing files. A UTF-8 byte-order mark
and CRLF line endings are *tolerated*: the file is parsed correctly and one warning
per file is logged and kept in :attr:`Split.notes` (Excel writes both; they are not
errors, but a user may want to know their file was edited on another system).
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from momentlens.data.formats import is_frame_folder, is_video_file
from momentlens.utils import MomentlensError

log = logging.getLogger(__name__)

CATEGORIES_FILE = "moments_categories.txt"
MIT_CSV = {"training": "trainingSet.csv", "validation": "validationSet.csv"}
SPLIT_ALIASES = {"train": "training", "val": "validation"}


def _canonical(root: Path, split: str) -> str:
    # "train" means "training" unless the dataset really has a split called "train".
    if (root / f"{split}.csv").is_file() or (root / split).is_dir():
        return split
    return SPLIT_ALIASES.get(split, split)


MAX_LISTED = 10  # problems quoted in one error message


class LayoutError(MomentlensError):
    """A dataset layout problem; the message names the file and line of each problem."""


@dataclass
class VideoRecord:
    """One video: an absolute ``path`` (a file, or a folder of JPEG frames), its
    ``label`` (class index into :attr:`Split.classes`) and ``extra`` fields
    (e.g. ``agree``/``disagree`` votes, ``source`` and ``line`` of its CSV row)."""

    path: Path
    label: int
    extra: dict = field(default_factory=dict)


@dataclass
class Split:
    """The records of one split, the class names in output order, the dataset root,
    the split name; ``missing`` lists records whose file was not found (kept in
    ``records`` only with ``missing="keep"``); ``notes`` holds tolerated oddities."""

    records: list[VideoRecord]
    classes: list[str]
    root: Path
    name: str
    layout: str = ""
    missing: list[VideoRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


@dataclass
class Problem:
    """One layout problem: ``kind`` is a short tag (``unknown_label``, ``missing``,
    ``duplicate``, ``malformed``, ``empty``), ``where`` is ``file:line``."""

    kind: str
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


# ----------------------------------------------------------------------------- reading


def _read_lines(path: Path, notes: list[str]) -> list[str]:
    """Lines of a text file, tolerating a UTF-8 BOM and CRLF (each noted once)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LayoutError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
        notes.append(f"{path}: starts with a UTF-8 byte-order mark (ignored)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LayoutError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from exc
    if "\r\n" in text:
        notes.append(f"{path}: CRLF line endings (accepted)")
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _rows(path: Path, notes: list[str]) -> Iterable[tuple[int, list[str]]]:
    """(1-based line number, fields) for every non-blank line of a CSV file."""
    for lineno, line in enumerate(_read_lines(path, notes), start=1):
        if line.strip():
            yield lineno, [f.strip() for f in next(csv.reader([line]))]


def load_classes(root: str | os.PathLike[str]) -> list[str]:
    """Class names from ``<root>/moments_categories.txt`` (``name,index`` lines), in
    index order. Indices must be exactly ``0..N-1``, each once."""
    path = Path(root) / CATEGORIES_FILE
    if not path.is_file():
        raise LayoutError(f"{path}: class list not found")
    notes: list[str] = []
    by_index: dict[int, str] = {}
    problems: list[str] = []
    seen: dict[str, int] = {}
    for lineno, fields in _rows(path, notes):
        if len(fields) != 2 or not fields[1].lstrip("-").isdigit():
            problems.append(f"{path}:{lineno}: expected 'name,index', got {','.join(fields)!r}")
            continue
        name, idx = fields[0], int(fields[1])
        if name in seen:
            problems.append(f"{path}:{lineno}: class {name!r} already listed on line {seen[name]}")
        elif idx in by_index:
            problems.append(f"{path}:{lineno}: index {idx} already used by {by_index[idx]!r}")
        else:
            seen[name], by_index[idx] = lineno, name
    if not problems and sorted(by_index) != list(range(len(by_index))):
        problems.append(f"{path}: indices must be 0..{len(by_index) - 1}, "
                        f"got {sorted(by_index)[:5]}...")
    if not by_index and not problems:
        problems.append(f"{path}: no classes listed")
    if problems:
        raise LayoutError(_summarise(problems))
    for note in notes:
        log.warning(note)
    return [by_index[i] for i in range(len(by_index))]


def _summarise(lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    more = f"\n  ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    head = "1 problem" if len(lines) == 1 else f"{len(lines)} problems"
    return f"{head} in the dataset layout:\n  " + "\n  ".join(shown) + more


def _label_index(label: str, classes: list[str] | None, index: dict[str, int] | None
                 ) -> int | None:
    if index is not None and label in index:
        return index[label]
    if label.isdigit() and (classes is None or int(label) < len(classes)):
        return int(label)
    return None


def resolve_video(path: Path) -> Path:
    """``path`` if it exists, else the JPEG frame folder ``path`` without its suffix if
    that exists, else ``path`` unchanged (reported as missing by the caller)."""
    if path.exists():
        return path
    folder = path.with_suffix("")
    if folder != path and is_frame_folder(folder):
        return folder
    return path


# ----------------------------------------------------------------------------- layouts


def _parse_csv(root: Path, csv_path: Path, video_dir: Path, classes: list[str] | None,
               notes: list[str], problems: list[Problem], mit: bool) -> list[VideoRecord]:
    index = {c: i for i, c in enumerate(classes)} if classes is not None else None
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for lineno, fields in _rows(csv_path, notes):
        where = f"{csv_path}:{lineno}"
        if not mit and lineno == 1 and [f.lower() for f in fields[:2]] == ["path", "label"]:
            continue
        if len(fields) < 2 or not fields[0]:
            want = "<class>/<file>.mp4,<label>,<agree>,<disagree>" if mit else "path,label"
            problems.append(Problem("malformed", where, f"expected '{want}', got {','.join(fields)!r}"))
            continue
        rel, label = fields[0], fields[1]
        if rel in seen:
            problems.append(Problem("duplicate", where, f"{rel} already listed on line {seen[rel]}"))
            continue
        seen[rel] = lineno
        idx = _label_index(label, classes, index)
        if idx is None:
            problems.append(Problem("unknown_label", where, f"unknown label {label!r}"))
            continue
        extra: dict = {"source": csv_path.name, "line": lineno, "rel": rel}
        if mit and len(fields) >= 4:
            for key, value in zip(("agree", "disagree"), fields[2:4]):
                extra[key] = int(value) if value.isdigit() else value
        records.append(VideoRecord(video_dir / rel, idx, extra))
    return records


def _class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _parse_folders(root: Path, split: str, classes: list[str] | None,
                   problems: list[Problem]) -> tuple[list[VideoRecord], list[str]]:
    split_dir = root / split
    if classes is None:
        ref = root / "training" if (root / "training").is_dir() else split_dir
        classes = _class_folders(ref)
    index = {c: i for i, c in enumerate(classes)}
    records: list[VideoRecord] = []
    for name in _class_folders(split_dir):
        if name not in index:
            problems.append(Problem("unknown_label", f"{split_dir / name}:0",
                                    f"class folder {name!r} is not a known class"))
            continue
        for entry in sorted((split_dir / name).iterdir()):
            if entry.name.startswith("."):
                continue
            if is_video_file(entry) or is_frame_folder(entry):
                records.append(VideoRecord(entry, index[name], {"rel": f"{name}/{entry.name}"}))
    return records, classes


def detect_layout(root: str | os.PathLike[str], split: str = "training") -> str:
    """``"mit"``, ``"csv"`` or ``"folders"`` for ``root``/``split``; LayoutError if none fits."""
    root = Path(root)
    split = _canonical(root, split)
    if (root / MIT_CSV.get(split, f"{split}Set.csv")).is_file():
        return "mit"
    if (root / f"{split}.csv").is_file():
        return "csv"
    if (root / split).is_dir():
        return "folders"
    raise LayoutError(
        f"{root}: no split {split!r} found (looked for {MIT_CSV.get(split, split + 'Set.csv')}, "
        f"{split}.csv and a {split}/ folder of class folders)")


def scan_split(root: str | os.PathLike[str], split: str = "training", layout: str = "auto"
               ) -> tuple[Split, list[Problem]]:
    """Parse a split without raising on row-level problems: returns the split (records
    that parsed, missing files listed in ``split.missing`` and kept in ``records``) and
    the problems found. ``momentlens check`` uses this; most callers want
    :func:`load_split`."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise LayoutError(f"{root}: dataset folder not found")
    split = _canonical(root, split)
    if layout == "auto":
        layout = detect_layout(root, split)
    notes: list[str] = []
    problems: list[Problem] = []
    classes = load_classes(root) if (root / CATEGORIES_FILE).is_file() else None
    if layout == "mit":
        csv_path = root / MIT_CSV.get(split, f"{split}Set.csv")
        if classes is None:
            raise LayoutError(f"{root / CATEGORIES_FILE}: class list not found (needed by "
                              f"{csv_path.name})")
        records = _parse_csv(root, csv_path, root / split, classes, notes, problems, mit=True)
        source = csv_path
    elif layout == "csv":
        csv_path = root / f"{split}.csv"
        if classes is None:
            classes = _classes_from_labels(csv_path)
        records = _parse_csv(root, csv_path, root, classes, notes, problems, mit=False)
        source = csv_path
    elif layout == "folders":
        records, classes = _parse_folders(root, split, classes, problems)
        source = root / split
    else:
        raise LayoutError(f"unknown layout {layout!r}; choose auto, mit, csv or folders")
    missing = []
    for rec in records:
        rec.path = resolve_video(rec.path)
        if not rec.path.exists():
            missing.append(rec)
            line = rec.extra.get("line", 0)
            problems.append(Problem("missing", f"{source}:{line}" if line else str(rec.path),
                                    f"file not found: {rec.path.relative_to(root)}"))
    if not records and not any(p.kind != "missing" for p in problems):
        problems.append(Problem("empty", f"{source}:0", f"split {split!r} has no videos"))
    for note in notes:
        log.warning(note)
    out = Split(records, list(classes or []), root, split, layout, missing, notes)
    return out, problems


def _classes_from_labels(csv_path: Path) -> list[str]:
    labels = {fields[1] for n, fields in _rows(csv_path, [])
              if len(fields) >= 2 and not (n == 1 and fields[:2] == ["path", "label"])}
    if labels and all(x.isdigit() for x in labels):
        return [str(i) for i in range(max(int(x) for x in labels) + 1)]
    return sorted(labels)


def load_split(root: str | os.PathLike[str], split: str = "training", layout: str = "auto",
               missing: str = "error") -> Split:
    """Records of one split of the dataset at ``root``.

    ``split``: ``"training"``, ``"validation"`` (aliases ``train``/``val``) or any name
    the layout has. ``missing``: ``"error"`` (default: raise, listing the first few
    missing files with their CSV line), ``"skip"`` (drop them, listed in
    ``Split.missing``) or ``"keep"`` (keep them; the dataset then quarantines them
    when it fails to read them). Raises :class:`LayoutError` for every other problem.
    """
    if missing not in ("error", "skip", "keep"):
        raise LayoutError(f"missing={missing!r}; choose error, skip or keep")
    out, problems = scan_split(root, split, layout)
    fatal = [p for p in problems if p.kind != "missing" or missing == "error"]
    if fatal:
        raise LayoutError(_summarise([str(p) for p in fatal]))
    if missing == "skip" and out.missing:
        gone = {id(r) for r in out.missing}
        out.records = [r for r in out.records if id(r) not in gone]
        log.warning("%s: skipped %d missing videos (first: %s)", out.name, len(out.missing),
                    out.missing[0].path)
        if not out.records:
            raise LayoutError(f"{out.root}: split {out.name!r} has no videos left after "
                              f"skipping {len(out.missing)} missing files")
    return out


def available_splits(root: str | os.PathLike[str]) -> list[str]:
    """Split names found at ``root`` (MiT CSVs, ``<split>.csv`` files or split folders)."""
    root = Path(root)
    found = [s for s, name in MIT_CSV.items() if (root / name).is_file()]
    if not found:
        found = [s for s in ("training", "validation", "testing")
                 if (root / f"{s}.csv").is_file() or (root / s).is_dir()]
    return found
