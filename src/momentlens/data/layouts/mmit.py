"""Multi-Moments in Time (``mmit``): several labels per video.

The release keeps MiT's file names: ``moments_categories.txt`` (``name,index``),
``trainingSet.csv`` / ``validationSet.csv`` without header, videos under ``training/``
and ``validation/``; but each row is ``<class>/<file>.mp4,<index>,<index>,...``: every
field after the path is a class index (one or more, each once). Records carry all of
them in ``labels`` and the first in ``label``; the split is ``multi_label``.

:func:`momentlens.data.layouts.mit.csv_kind` decides between MiT and M-MiT from the
rows; a row with a class name in it is an error here (a MiT list is never read as
M-MiT).
"""

from __future__ import annotations

from pathlib import Path

from momentlens.data.layouts.common import (
    Parsed,
    Problem,
    VideoRecord,
    is_int,
    listed_rows,
    no_split_id,
)
from momentlens.data.layouts.mit import csv_path, load_classes

NAME = "mmit"


def _labels(fields: list[str], num_classes: int, where: str
            ) -> tuple[tuple[int, ...] | None, Problem | None]:
    """The label indices of a row, or the problem that makes it malformed."""
    if not all(is_int(f) for f in fields[1:]):
        bad = next(f for f in fields[1:] if not is_int(f))
        return None, Problem("malformed", where, f"label {bad!r} is not a class index: an "
                             "M-MiT row is '<path>,<index>,<index>,...' (a class name means "
                             "a MiT list: --layout mit)")
    labels = tuple(int(f) for f in fields[1:])
    if len(set(labels)) != len(labels):
        return None, Problem("duplicate", where, f"a label index repeats in {fields[1:]}")
    out_of_range = [i for i in labels if i >= num_classes]
    if out_of_range:
        return None, Problem("unknown_label", where, f"label index {out_of_range[0]} is "
                             f"not a class (0..{num_classes - 1})")
    return labels, None


def read(root: Path, split: str, split_id: int | None, notes: list[str],
         problems: list[Problem]) -> Parsed:
    """Records with every label index of their row (videos under ``<root>/<split>/``)."""
    no_split_id(NAME, split_id)
    source = csv_path(root, split)
    classes = load_classes(root, needed_by=source)
    records: list[VideoRecord] = []
    for lineno, where, fields in listed_rows(source, notes, problems,
                                             "'<path>,<index>[,<index>...]'"):
        rel = fields[0]
        labels, problem = _labels(fields, len(classes), where)
        if problem is not None:
            problems.append(problem)
            continue
        extra = {"source": source.name, "line": lineno, "rel": rel}
        records.append(VideoRecord(root / split / rel, labels[0], extra, labels))
    return Parsed(records, classes, source, multi_label=True)
