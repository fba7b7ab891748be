"""Dataset layouts on disk -> a :class:`Split` of :class:`VideoRecord` (path, labels).

One reader per release format, each in its own module, each recognised automatically
(``layout="auto"``) or forced by name (``--layout NAME``):

============  ==============================================================  ============
layout        files read                                                      splits
============  ==============================================================  ============
``mit``       ``moments_categories.txt``, ``trainingSet.csv``,                training,
              ``validationSet.csv`` (``path,<class>,<agree>,<disagree>``)      validation
``mmit``      the same names, rows ``path,<index>,<index>,...`` (multi-label)  "
``ssv2``      ``something-something-v2-{labels,train,validation}.json``       "
``kinetics``  ``[annotations/]{train,val}.csv`` (``label,youtube_id,...``)    "
``ucf101``    ``ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt``       N = 1..3
``hmdb51``    ``testTrainMulti_7030_splits/<class>_test_splitN.txt``          N = 1..3
``csv``       ``<split>.csv`` (``path,label``)                                any name
``folders``   ``<split>/<class>/<video>``                                     any name
============  ==============================================================  ============

Detection: the release-specific files above decide (MiT and M-MiT by their rows, see
:func:`.mit.csv_kind`); when two releases' files are both present, or the rows could
be either MiT or M-MiT, detection refuses and asks for ``--layout``. Only when none is
present are the generic ``csv`` and then ``folders`` layouts used. Everywhere a video
may be a folder of JPEG frames (:mod:`.frames`).

Problems are collected with file and line number and raised together as one
:class:`LayoutError`: unknown labels, malformed rows, duplicated rows, an empty split,
and (unless ``missing`` says otherwise) missing files. A UTF-8 byte-order mark and CRLF
line endings are tolerated and noted in :attr:`Split.notes`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from momentlens.data.layouts import folders, hmdb51, kinetics, mit, mmit, ssv2, ucf101
from momentlens.data.layouts.common import (
    LayoutError,
    Parsed,
    Problem,
    Split,
    VideoRecord,
    canonical_split,
    summarise,
)
from momentlens.data.layouts.frames import find_video, resolve_video
from momentlens.data.layouts.mit import CATEGORIES_FILE, MIT_CSV, load_classes

__all__ = ["CATEGORIES_FILE", "LAYOUTS", "MIT_CSV", "LayoutError", "Problem", "Split",
           "VideoRecord", "available_splits", "detect_layout", "is_multi_label",
           "load_classes", "load_split", "load_training_split", "no_split_message", "resolve_video",
           "scan_split"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reader:
    """A layout: its reader, the splits it finds at a root, and what a listed video
    missing on disk means by default (``error``, or ``skip`` where that is normal)."""

    name: str
    read: Callable[..., Parsed]
    splits: Callable[[Path], list[str]]
    missing: str = "error"


LAYOUTS: dict[str, Reader] = {r.name: r for r in (
    Reader("mit", mit.read, mit.splits),
    Reader("mmit", mmit.read, mit.splits),
    Reader("ssv2", ssv2.read, ssv2.splits),
    Reader("kinetics", kinetics.read, kinetics.splits, kinetics.MISSING),
    Reader("ucf101", ucf101.read, ucf101.splits),
    Reader("hmdb51", hmdb51.read, hmdb51.splits),
    Reader("csv", folders.read_csv, folders.csv_splits),
    Reader("folders", folders.read_folders, folders.folder_splits),
)}
#: Values of ``--layout`` and of the ``layout`` training setting.
LAYOUT_CHOICES = ("auto", *LAYOUTS)
MISSING_CHOICES = ("auto", "error", "skip", "keep")


def _release_layouts(root: Path) -> list[str]:
    """The release-specific layouts whose files are at ``root`` (MiT/M-MiT as one)."""
    found = []
    if any((root / name).is_file() for name in MIT_CSV.values()):
        found.append("moments")
    for name, module in (("ssv2", ssv2), ("ucf101", ucf101), ("hmdb51", hmdb51),
                         ("kinetics", kinetics)):
        if module.detect(root):
            found.append(name)
    return found


def _literal_split(root: Path, split: str) -> str:
    # "train" means "training" unless the dataset really has a split called "train".
    if (root / f"{split}.csv").is_file() or (root / split).is_dir():
        return split
    return canonical_split(split)


def detect_layout(root: str | os.PathLike[str], split: str = "training") -> str:
    """The layout of the dataset at ``root`` (see the module docstring); LayoutError
    naming the files when none fits or when the files could be read two ways."""
    root = Path(root)
    found = _release_layouts(root)
    if len(found) > 1:
        raise LayoutError(f"{root}: files of several releases found ({', '.join(found)}); "
                          "pass --layout NAME")
    if found == ["moments"]:
        kind, reason = mit.csv_kind(root)
        if kind == "ambiguous":
            raise LayoutError(f"{root}: cannot tell MiT from M-MiT: {reason}")
        return kind
    if found:
        return found[0]
    split = _literal_split(root, split)
    if (root / f"{split}.csv").is_file():
        return "csv"
    if (root / split).is_dir():
        return "folders"
    raise LayoutError(no_split_message(root, split))


# The smallest dataset of each layout: (layout, files), one file a line.
LAYOUT_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("mit", "moments_categories.txt (jumping), trainingSet.csv "
            "(jumping/a.mp4,jumping,3,0), training/jumping/a.mp4"),
    ("mmit", "the same files, rows of class indices: trainingSet.csv (jumping/a.mp4,0,2)"),
    ("ssv2", "something-something-v2-labels.json ({\"Pushing something\": \"0\"}), "
             "something-something-v2-train.json ([{\"id\": \"1\", \"template\": "
             "\"Pushing [something]\"}]), 20bn-something-something-v2/1.webm"),
    ("kinetics", "train.csv (label,youtube_id,time_start,time_end,split / "
                 "jumping,abc,0,10,train), train/abc_000000_000010.mp4"),
    ("ucf101", "ucfTrainTestlist/classInd.txt (1 Jumping), ucfTrainTestlist/trainlist01.txt "
               "(Jumping/v_a.avi 1), UCF-101/Jumping/v_a.avi"),
    ("hmdb51", "testTrainMulti_7030_splits/jump_test_split1.txt (a.avi 1), jump/a.avi"),
    ("csv", "training.csv (videos/a.mp4,jumping), videos/a.mp4"),
    ("folders", "training/jumping/a.mp4"),
)


def no_split_message(root: str | os.PathLike[str], split: str | None = None) -> str:
    """The one wording (``check``, ``stats``, ``train``, ``evaluate``) for a folder in
    which no layout finds a split: the layouts known, with the smallest example of each."""
    what = f"no split {split!r}" if split else "no dataset split"
    lines = [f"{root}: {what} found; the layouts momentlens reads (smallest example of each):"]
    lines += [f"  {name}: {files}" for name, files in LAYOUT_EXAMPLES]
    return "\n".join(lines)


def _reader(layout: str) -> Reader:
    if layout not in LAYOUTS:
        raise LayoutError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUT_CHOICES)}")
    return LAYOUTS[layout]


def _check_paths(parsed: Parsed, root: Path, problems: list[Problem]) -> list[VideoRecord]:
    """Resolve frame folders; the records whose video is not on disk (each a problem)."""
    base = parsed.source if parsed.source.is_dir() else parsed.source.parent
    missing = []
    for rec in parsed.records:
        found = find_video(rec.path)
        if found is not None:
            rec.path = found
            continue
        missing.append(rec)
        line = rec.extra.get("line", 0)
        where = rec.extra.get("where") or (
            f"{base / rec.extra.get('source', '')}:{line}" if line else str(rec.path))
        try:
            shown = rec.path.relative_to(root)
        except ValueError:
            shown = rec.path
        problems.append(Problem("missing", where, f"file not found: {shown}"))
    return missing


def scan_split(root: str | os.PathLike[str], split: str = "training", layout: str = "auto",
               split_id: int | None = None) -> tuple[Split, list[Problem]]:
    """Parse a split without raising on row-level problems: returns the split (records
    that parsed, missing files listed in ``split.missing`` and kept in ``records``) and
    the problems found. ``momentlens check`` uses this; most callers want
    :func:`load_split`."""
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise LayoutError(f"{root}: dataset folder not found")
    if layout == "auto":
        layout = detect_layout(root, split)
    reader = _reader(layout)
    split = _literal_split(root, split) if layout in ("csv", "folders") else canonical_split(split)
    notes: list[str] = []
    problems: list[Problem] = []
    parsed = reader.read(root, split, split_id, notes, problems)
    missing = _check_paths(parsed, root, problems)
    if not parsed.records and not any(p.kind != "missing" for p in problems):
        problems.append(Problem("empty", f"{parsed.source}:0", f"split {split!r} has no videos"))
    notes = list(dict.fromkeys(notes))
    for note in notes:
        log.warning(note)
    list_file = None if parsed.source.is_dir() else parsed.source
    out = Split(parsed.records, list(parsed.classes), root, split, layout, missing, notes,
                parsed.multi_label, parsed.split_id, list_file)
    return out, problems


def load_split(root: str | os.PathLike[str], split: str = "training", layout: str = "auto",
               missing: str = "auto", split_id: int | None = None) -> Split:
    """Records of one split of the dataset at ``root``.

    ``split``: ``"training"``, ``"validation"`` (aliases ``train``/``val``/``test``) or
    any name the layout has. ``layout``: ``auto`` or one of :data:`LAYOUTS`.
    ``split_id``: the numbered split of UCF101/HMDB51 (1..3, default 1). ``missing``:
    ``"error"`` (raise, listing the first few missing files with their list line),
    ``"skip"`` (drop them, listed in ``Split.missing``), ``"keep"`` (keep them; the
    dataset then quarantines them when it fails to read them) or ``"auto"`` (the
    layout's default: ``skip`` for Kinetics, where missing videos are normal, else
    ``error``). Raises :class:`LayoutError` for every other problem.
    """
    if missing not in MISSING_CHOICES:
        raise LayoutError(f"missing={missing!r}; choose {', '.join(MISSING_CHOICES)}")
    out, problems = scan_split(root, split, layout, split_id)
    if missing == "auto":
        missing = LAYOUTS[out.layout].missing
    fatal = [p for p in problems if p.kind != "missing" or missing == "error"]
    if fatal:
        raise LayoutError(summarise([str(p) for p in fatal]))
    if missing == "skip" and out.missing:
        gone = {id(r) for r in out.missing}
        out.records = [r for r in out.records if id(r) not in gone]
        log.warning("%s: skipped %d missing videos (first: %s)", out.name, len(out.missing),
                    out.missing[0].path)
        if not out.records:
            raise LayoutError(f"{out.root}: split {out.name!r} has no videos left after "
                              f"skipping {len(out.missing)} missing files")
    return out


def is_multi_label(split: Split) -> bool:
    """Whether ``split``'s videos may carry several labels (the M-MiT layout)."""
    return split.multi_label


def load_training_split(root: str | os.PathLike[str], split: str = "training",
                        layout: str = "auto", split_id: int | None = None,
                        missing: str = "auto") -> Split:
    """:func:`load_split` for training. A multi-label split (M-MiT) is trained with
    multi-hot targets (binary cross-entropy by default: ``TrainConfig.loss``)."""
    return load_split(root, split, layout, missing, split_id)


def available_splits(root: str | os.PathLike[str], layout: str = "auto") -> list[str]:
    """Split names found at ``root`` for ``layout`` (``auto``: the detected one)."""
    root = Path(root)
    if layout == "auto":
        if _release_layouts(root):
            layout = detect_layout(root)
        else:
            return [s for s in folders.GENERIC_SPLITS
                    if (root / f"{s}.csv").is_file() or (root / s).is_dir()]
    return _reader(layout).splits(root)
