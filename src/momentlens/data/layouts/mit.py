"""The Moments-in-Time release (``mit``).

``moments_categories.txt`` (``name,index`` per line; the index order is the model's
output order; names may contain ``+``), ``trainingSet.csv`` / ``validationSet.csv``
without header, rows ``<class>/<file>.mp4,<label>,<agree>,<disagree>`` where
``<label>`` is the class name (as released) or its integer index, and the videos under
``training/`` and ``validation/``.

Multi-Moments (M-MiT, :mod:`.mmit`) uses the same file names with rows
``<path>,<index>,<index>,...``; :func:`csv_kind` tells the two apart, and a row that
can only be M-MiT is an error here, never read as ``label, agree, disagree``.
"""

from __future__ import annotations

import os
from pathlib import Path

from momentlens.data.layouts.common import (
    LayoutError,
    Parsed,
    Problem,
    VideoRecord,
    csv_rows,
    is_int,
    listed_rows,
    no_split_id,
    summarise,
)

NAME = "mit"
CATEGORIES_FILE = "moments_categories.txt"
MIT_CSV = {"training": "trainingSet.csv", "validation": "validationSet.csv"}
# Integers after the path that a MiT row may have: the label index alone, or with votes.
MIT_INT_COUNTS = (1, 3)


def csv_path(root: Path, split: str) -> Path:
    return root / MIT_CSV.get(split, f"{split}Set.csv")


def splits(root: Path) -> list[str]:
    return [s for s, name in MIT_CSV.items() if (root / name).is_file()]


def load_classes(root: str | os.PathLike[str], needed_by: Path | None = None) -> list[str]:
    """Class names from ``<root>/moments_categories.txt`` (``name,index`` lines), in
    index order. Indices must be exactly ``0..N-1``, each once. ``needed_by``: the list
    file that refers to them, named when the class list is missing."""
    path = Path(root) / CATEGORIES_FILE
    if not path.is_file():
        why = f" (needed by {needed_by.name})" if needed_by is not None else ""
        raise LayoutError(f"{path}: class list not found{why}")
    by_index: dict[int, str] = {}
    problems: list[str] = []
    seen: dict[str, int] = {}
    for lineno, fields in csv_rows(path, []):
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
        raise LayoutError(summarise(problems))
    return [by_index[i] for i in range(len(by_index))]


# ----------------------------------------------------------------------------- MiT or M-MiT


def _row_shape(fields: list[str]) -> str | int:
    """``"names"`` (a class name after the path: MiT), the number of integers after the
    path (every field after it an integer), or ``"other"``."""
    if len(fields) < 2 or not fields[0]:
        return "other"
    if not is_int(fields[1]):
        return "names"
    return len(fields) - 1 if all(is_int(f) for f in fields[1:]) else "other"


def mmit_evidence(path: Path) -> tuple[int, str] | None:
    """The first line of ``path`` that only an M-MiT list can have, with why, or ``None``.

    A MiT row is ``path,<name or index>[,<agree>,<disagree>]``. Only M-MiT rows are
    ``path`` followed by 2 or 4+ integers, and only M-MiT lists mix rows with different
    numbers of integers (a video with one label, the next with three)."""
    first: tuple[int, int] | None = None
    for lineno, fields in csv_rows(path, []):
        shape = _row_shape(fields)
        if shape == "names":
            return None
        if not isinstance(shape, int):
            continue
        if shape not in MIT_INT_COUNTS:
            return lineno, f"{shape} label indices after the path"
        if first is None:
            first = (lineno, shape)
        elif shape != first[1]:
            return lineno, (f"{shape} integers after the path where line {first[0]} has "
                            f"{first[1]}")
    return None


def csv_kind(root: Path) -> tuple[str, str]:
    """(``"mit"``, ``"mmit"`` or ``"ambiguous"``, a reason) from the rows of the Moments
    CSVs at ``root``. A class name after the path means MiT; rows only M-MiT can have
    mean M-MiT; lists whose every row is ``path`` and the same 1 or 3 integers could be
    either, and are refused rather than guessed."""
    files = [root / name for name in MIT_CSV.values() if (root / name).is_file()]
    shapes: set = set()
    for path in files:
        evidence = mmit_evidence(path)
        if evidence is not None:
            return "mmit", f"{path.name}:{evidence[0]}: {evidence[1]}"
        shapes |= {_row_shape(fields) for _, fields in csv_rows(path, [])}
    if "names" in shapes or not shapes & set(MIT_INT_COUNTS):
        return "mit", "class names in the label column"
    counts = sorted(shapes & set(MIT_INT_COUNTS))
    return "ambiguous", (
        f"every row of {', '.join(p.name for p in files)} is a path and {counts[0]} "
        "integer(s): MiT rows with label indices, or M-MiT rows with as many labels; pass "
        "--layout mit or --layout mmit")


# ----------------------------------------------------------------------------- reader


def _label_index(label: str, classes: list[str], index: dict[str, int]) -> int | None:
    if label in index:
        return index[label]
    if is_int(label) and int(label) < len(classes):
        return int(label)
    return None


def read(root: Path, split: str, split_id: int | None, notes: list[str],
         problems: list[Problem]) -> Parsed:
    """The records of ``trainingSet.csv`` / ``validationSet.csv`` (videos under
    ``<root>/<split>/``)."""
    no_split_id(NAME, split_id)
    source = csv_path(root, split)
    classes = load_classes(root, needed_by=source)
    evidence = mmit_evidence(source) if source.is_file() else None
    if evidence is not None:
        raise LayoutError(f"{source}:{evidence[0]}: {evidence[1]}: this is a Multi-Moments "
                          "(M-MiT) list of label indices, not a MiT list "
                          "'<class>/<file>.mp4,<label>,<agree>,<disagree>'; read it with "
                          "--layout mmit")
    index = {c: i for i, c in enumerate(classes)}
    records: list[VideoRecord] = []
    expected = "'<class>/<file>.mp4,<label>,<agree>,<disagree>'"
    for lineno, where, fields in listed_rows(source, notes, problems, expected):
        rel, label = fields[0], fields[1]
        idx = _label_index(label, classes, index)
        if idx is None:
            problems.append(Problem("unknown_label", where, f"unknown label {label!r}"))
            continue
        extra: dict = {"source": source.name, "line": lineno, "rel": rel}
        if len(fields) >= 4:
            for key, value in zip(("agree", "disagree"), fields[2:4]):
                extra[key] = int(value) if value.isdigit() else value
        records.append(VideoRecord(root / split / rel, idx, extra))
    return Parsed(records, classes, source)
