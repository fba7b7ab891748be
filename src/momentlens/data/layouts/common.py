"""What every layout reader shares: the records it returns, its errors, and reading
annotation text files the way the releases write them (BOM, CRLF, commas in quotes).

A reader reports each problem with the file and line (``Problem.where``), collects them
all, and :func:`momentlens.data.layouts.load_split` raises them together as one
:class:`LayoutError`; nothing is guessed silently.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from momentlens.utils import MomentlensError

log = logging.getLogger(__name__)

MAX_LISTED = 10  # problems quoted in one error message
# Canonical split names; every reader maps its own names ("train", "val", "test") onto them.
TRAINING, VALIDATION = "training", "validation"
SPLIT_ALIASES = {"train": TRAINING, "val": VALIDATION, "valid": VALIDATION,
                 "test": VALIDATION, "testing": VALIDATION}


class LayoutError(MomentlensError):
    """A dataset layout problem; the message names the file and line of each problem."""


@dataclass
class VideoRecord:
    """One video: an absolute ``path`` (a file, or a folder of JPEG frames), its
    ``label`` (class index into :attr:`Split.classes`; for a multi-label video its
    first label), ``labels`` (every class index of the video, ``(label,)`` for a
    single-label one) and ``extra`` fields (e.g. ``agree``/``disagree`` votes,
    ``source`` and ``line`` of its annotation row)."""

    path: Path
    label: int
    extra: dict = field(default_factory=dict)
    labels: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = (int(self.label),)


@dataclass
class Split:
    """The records of one split, the class names in output order, the dataset root,
    the split name; ``missing`` lists records whose file was not found (kept in
    ``records`` only with ``missing="keep"``); ``notes`` holds tolerated oddities.
    ``multi_label``: records may carry several labels (M-MiT). ``split_id``: the
    numbered split (UCF101, HMDB51: 1..3), else ``None``. ``list_file``: the
    annotation file the records come from (``None`` for class folders)."""

    records: list[VideoRecord]
    classes: list[str]
    root: Path
    name: str
    layout: str = ""
    missing: list[VideoRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    multi_label: bool = False
    split_id: int | None = None
    list_file: Path | None = None

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


@dataclass
class Parsed:
    """What a reader returns: records (paths not yet checked), class names in output
    order, the file (or folder) they come from, and whether labels are multi-label."""

    records: list[VideoRecord]
    classes: list[str]
    source: Path
    multi_label: bool = False
    split_id: int | None = None


def read_lines(path: Path, notes: list[str]) -> list[str]:
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


def csv_rows(path: Path, notes: list[str]) -> Iterable[tuple[int, list[str]]]:
    """(1-based line number, fields) for every non-blank line of a CSV file."""
    for lineno, line in enumerate(read_lines(path, notes), start=1):
        if line.strip():
            yield lineno, [f.strip() for f in next(csv.reader([line]))]


def listed_rows(path: Path, notes: list[str], problems: list[Problem], expected: str,
                skip: Callable[[int, list[str]], bool] | None = None
                ) -> Iterable[tuple[int, str, list[str]]]:
    """The CSV rows of a video list that name a video not listed before:
    ``(line number, "file:line", fields)``. A row without a path and one more field is a
    ``malformed`` problem (``expected`` says what a row looks like), a path listed twice a
    ``duplicate``; ``skip(lineno, fields)`` drops rows such as a header."""
    seen: dict[str, int] = {}
    for lineno, fields in csv_rows(path, notes):
        where = f"{path}:{lineno}"
        if skip is not None and skip(lineno, fields):
            continue
        if len(fields) < 2 or not fields[0]:
            problems.append(Problem("malformed", where,
                                    f"expected {expected}, got {','.join(fields)!r}"))
            continue
        if first_listing(seen, fields[0], lineno, where, problems):
            yield lineno, where, fields


def first_listing(seen: dict[str, int], path: str, lineno: int, where: str,
                  problems: list[Problem]) -> bool:
    """True the first time a list names ``path`` (noted in ``seen``); a later row naming
    it again is a ``duplicate`` problem."""
    if path in seen:
        problems.append(Problem("duplicate", where,
                                f"{path} already listed on line {seen[path]}"))
        return False
    seen[path] = lineno
    return True


def text_rows(path: Path, notes: list[str]) -> Iterable[tuple[int, list[str]]]:
    """(1-based line number, whitespace-separated fields) for every non-blank line."""
    for lineno, line in enumerate(read_lines(path, notes), start=1):
        if line.strip():
            yield lineno, line.split()


def summarise(lines: list[str]) -> str:
    shown = lines[:MAX_LISTED]
    more = f"\n  ... and {len(lines) - len(shown)} more" if len(lines) > len(shown) else ""
    head = "1 problem" if len(lines) == 1 else f"{len(lines)} problems"
    return f"{head} in the dataset layout:\n  " + "\n  ".join(shown) + more


def canonical_split(split: str) -> str:
    """``training``/``validation`` for any of their aliases; other names unchanged."""
    return SPLIT_ALIASES.get(split, split)


def is_int(text: str) -> bool:
    return text.isascii() and text.isdigit()


def no_split_id(layout: str, split_id: int | None) -> None:
    """Refuse ``--split-id`` for a layout whose splits have no number."""
    if split_id not in (None, 1):
        raise LayoutError(f"the {layout} layout has no numbered splits; --split-id {split_id} "
                          "applies to ucf101 and hmdb51")


def numbered_split(layout: str, split_id: int | None) -> int:
    """The split number (1..3, default 1) of a layout with three numbered splits."""
    split_id = 1 if split_id is None else int(split_id)
    if split_id not in (1, 2, 3):
        raise LayoutError(f"--split-id {split_id}: {layout} has splits 1, 2 and 3")
    return split_id


def class_folders(folder: Path) -> list[str]:
    """Names of the non-hidden sub-folders of ``folder``, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def first_existing(*candidates: Path) -> Path | None:
    for path in candidates:
        if path.exists():
            return path
    return None
