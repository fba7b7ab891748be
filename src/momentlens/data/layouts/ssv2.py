"""Something-Something v2 (``ssv2``).

``something-something-v2-labels.json`` maps each template with its brackets removed
(``"Putting something on a surface"``) to a class index written as a string;
``something-something-v2-train.json`` and ``-validation.json`` are lists of
``{"id", "label", "template", "placeholders"}``; the videos are ``<id>.webm`` (VP9) in
one folder, ``20bn-something-something-v2/``. The later release's names
(``labels/labels.json``, ``labels/train.json``, ``labels/validation.json``) work too.

A video's class is its ``template`` with ``[`` and ``]`` removed, looked up in the
labels file; the free-text ``label`` (the template with its placeholders filled in) is
kept in ``extra["text"]`` and never used as the class.
"""

from __future__ import annotations

import json
from pathlib import Path

from momentlens.data.layouts.common import (
    LayoutError,
    Parsed,
    Problem,
    VideoRecord,
    first_existing,
    is_int,
    no_split_id,
    read_lines,
)

NAME = "ssv2"
PREFIX = "something-something-v2-"
SPLIT_FILES = {"training": "train", "validation": "validation"}
VIDEO_DIRS = ("20bn-something-something-v2", "videos", ".")
VIDEO_SUFFIX = ".webm"


def _annotation(root: Path, stem: str) -> Path | None:
    return first_existing(root / f"{PREFIX}{stem}.json", root / "labels" / f"{stem}.json")


def detect(root: Path) -> bool:
    return _annotation(root, "labels") is not None


def splits(root: Path) -> list[str]:
    return [s for s, stem in SPLIT_FILES.items() if _annotation(root, stem) is not None]


def class_name(template: str) -> str:
    """The class of a template: ``"Putting [something] on a surface"`` ->
    ``"Putting something on a surface"``."""
    return template.replace("[", "").replace("]", "")


def _load_json(path: Path, notes: list[str]) -> object:
    text = "\n".join(read_lines(path, notes))
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LayoutError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc


def load_classes(root: Path, notes: list[str]) -> list[str]:
    """Class names in index order from the labels file (indices ``0..N-1``, each once)."""
    path = _annotation(root, "labels")
    if path is None:
        raise LayoutError(f"{root / (PREFIX + 'labels.json')}: class list not found")
    data = _load_json(path, notes)
    if not isinstance(data, dict) or not data:
        raise LayoutError(f"{path}: expected an object {{template: index}}, got "
                          f"{type(data).__name__}")
    by_index: dict[int, str] = {}
    for name, value in data.items():
        idx = str(value)
        if not is_int(idx) or int(idx) in by_index:
            raise LayoutError(f"{path}: {name!r}: index {value!r} is not a new integer")
        by_index[int(idx)] = name
    if sorted(by_index) != list(range(len(by_index))):
        raise LayoutError(f"{path}: indices must be 0..{len(by_index) - 1}")
    return [by_index[i] for i in range(len(by_index))]


def _video_dir(root: Path) -> Path:
    for name in VIDEO_DIRS:
        if (root / name).is_dir() and any((root / name).glob(f"*{VIDEO_SUFFIX}")):
            return (root / name).resolve()
    return root / VIDEO_DIRS[0]


def read(root: Path, split: str, split_id: int | None, notes: list[str],
         problems: list[Problem]) -> Parsed:
    """Records of the train or validation list; the class from each entry's template."""
    no_split_id(NAME, split_id)
    classes = load_classes(root, notes)
    index = {c: i for i, c in enumerate(classes)}
    source = _annotation(root, SPLIT_FILES.get(split, split))
    if source is None:
        raise LayoutError(f"{root}: no {PREFIX}{SPLIT_FILES.get(split, split)}.json for "
                          f"split {split!r}")
    entries = _load_json(source, notes)
    if not isinstance(entries, list):
        raise LayoutError(f"{source}: expected a list of videos, got {type(entries).__name__}")
    videos = _video_dir(root)
    records: list[VideoRecord] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(entries):
        where = f"{source}:entry {n}"
        vid = str(entry.get("id", "")) if isinstance(entry, dict) else ""
        template = entry.get("template") if isinstance(entry, dict) else None
        if not is_int(vid) or not isinstance(template, str):
            problems.append(Problem("malformed", where, "expected {\"id\": \"<digits>\", "
                                    f"\"template\": \"...\", ...}}, got {entry!r}"[:200]))
            continue
        if vid in seen:
            problems.append(Problem("duplicate", where, f"id {vid} already listed at entry "
                                    f"{seen[vid]}"))
            continue
        seen[vid] = n
        name = class_name(template)
        if name not in index:
            problems.append(Problem("unknown_label", where, f"template {template!r} (class "
                                    f"{name!r}) is not in the labels file"))
            continue
        extra = {"source": source.name, "entry": n, "where": where, "rel": f"{vid}{VIDEO_SUFFIX}",
                 "id": vid, "text": entry.get("label", "")}
        records.append(VideoRecord(videos / f"{vid}{VIDEO_SUFFIX}", index[name], extra))
    return Parsed(records, classes, source)
