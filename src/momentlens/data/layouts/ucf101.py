"""UCF101 (``ucf101``), three numbered splits.

``ucfTrainTestlist/`` (or the dataset folder itself) holds ``classInd.txt``
(``1 ApplyEyeMakeup`` lines: 1-based indices, so class index 0 is the line with 1),
``trainlist0N.txt`` (``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``: path and 1-based
class) and ``testlist0N.txt`` (paths only; the class is the path's folder), N = 1, 2, 3
(``--split-id``). Videos are ``.avi`` under ``UCF-101/<class>/`` (or ``<class>/``).
Split ``training`` is the train list, ``validation`` (alias ``test``) the test list.
"""

from __future__ import annotations

from pathlib import Path

from momentlens.data.layouts.common import (
    LayoutError,
    Parsed,
    Problem,
    VideoRecord,
    first_existing,
    first_listing,
    is_int,
    numbered_split,
    summarise,
    text_rows,
)

NAME = "ucf101"
LIST_DIR = "ucfTrainTestlist"
CLASS_FILE = "classInd.txt"
LIST_FILES = {"training": "trainlist{:02d}.txt", "validation": "testlist{:02d}.txt"}
VIDEO_DIR = "UCF-101"


def _list_dir(root: Path) -> Path | None:
    return first_existing(root / LIST_DIR / CLASS_FILE, root / CLASS_FILE)


def detect(root: Path) -> bool:
    return _list_dir(root) is not None


def splits(root: Path) -> list[str]:
    return list(LIST_FILES) if detect(root) else []


def load_classes(path: Path, notes: list[str]) -> list[str]:
    """Class names from ``classInd.txt``, index ``i`` from the line numbered ``i + 1``."""
    by_index: dict[int, str] = {}
    problems: list[str] = []
    for lineno, fields in text_rows(path, notes):
        if len(fields) != 2 or not is_int(fields[0]) or int(fields[0]) < 1:
            problems.append(f"{path}:{lineno}: expected '<index from 1> <class>', got "
                            f"{' '.join(fields)!r}")
        elif int(fields[0]) in by_index or fields[1] in by_index.values():
            problems.append(f"{path}:{lineno}: index or class listed twice")
        else:
            by_index[int(fields[0])] = fields[1]
    if not problems and sorted(by_index) != list(range(1, len(by_index) + 1)):
        problems.append(f"{path}: indices must be 1..{len(by_index)} (1-based), got "
                        f"{sorted(by_index)[:5]}...")
    if problems or not by_index:
        raise LayoutError(summarise(problems or [f"{path}: no classes listed"]))
    return [by_index[i] for i in range(1, len(by_index) + 1)]


def _row_label(fields: list[str], split: str, classes: list[str], index: dict[str, int]
               ) -> tuple[int | None, str]:
    """(class index, problem message) of one list row."""
    folder = fields[0].split("/")[0] if "/" in fields[0] else ""
    if folder not in index:
        return None, f"the path's class folder {folder!r} is not in {CLASS_FILE}"
    if split == "validation":
        return (index[folder], "") if len(fields) == 1 else (None, "expected a path only")
    if len(fields) != 2 or not is_int(fields[1]) or not 1 <= int(fields[1]) <= len(classes):
        return None, f"expected '<class>/<file>.avi <index 1..{len(classes)}>'"
    if int(fields[1]) - 1 != index[folder]:
        return None, (f"index {fields[1]} is {classes[int(fields[1]) - 1]!r} but the path "
                      f"is in {folder!r}")
    return index[folder], ""


def read(root: Path, split: str, split_id: int | None, notes: list[str],
         problems: list[Problem]) -> Parsed:
    """Records of train list N (``training``) or test list N (``validation``)."""
    number = numbered_split(NAME, split_id)
    if split not in LIST_FILES:
        raise LayoutError(f"ucf101 has splits training (trainlist) and validation "
                          f"(testlist), not {split!r}")
    class_file = _list_dir(root)
    if class_file is None:
        raise LayoutError(f"{root / LIST_DIR / CLASS_FILE}: class list not found")
    classes = load_classes(class_file, notes)
    index = {c: i for i, c in enumerate(classes)}
    source = class_file.parent / LIST_FILES[split].format(number)
    if not source.is_file():
        raise LayoutError(f"{source}: list of split {number} not found")
    videos = root / VIDEO_DIR if (root / VIDEO_DIR).is_dir() else root
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for lineno, fields in text_rows(source, notes):
        where = f"{source}:{lineno}"
        label, message = _row_label(fields, split, classes, index)
        if label is None:
            problems.append(Problem("malformed", where, f"{message}, got {' '.join(fields)!r}"))
            continue
        if not first_listing(seen, fields[0], lineno, where, problems):
            continue
        records.append(VideoRecord(videos / fields[0], label,
                                   {"source": source.name, "line": lineno, "rel": fields[0]}))
    return Parsed(records, classes, source, split_id=number)
