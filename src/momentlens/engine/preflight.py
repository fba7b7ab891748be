"""Checks around a training run that keep its record honest: classes without videos,
quarantined videos that read again, videos an epoch's sampler leaves out, and what a
failed checkpoint write leaves behind."""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from momentlens.data.dataset import VideoDataset
from momentlens.data.layout import Split
from momentlens.engine import checkpoint as ckpt
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.writes import WriteFailed

log = logging.getLogger(__name__)


def empty_classes(split: Split) -> list[str]:
    """The classes of ``split``'s class list that none of its videos has."""
    counts = Counter(int(i) for r in split.records for i in r.labels)  # every label
    return [name for i, name in enumerate(split.classes) if counts[i] == 0]


def warn_empty_classes(train: Split, val: Split) -> None:
    """One warning line per split with classes that have no videos in it."""
    for split, what in ((train, "training"), (val, "validation")):
        empty = empty_classes(split)
        if empty:
            print(f"warning: {len(empty)} of {len(split.classes)} classes have no {what} "
                  f"videos: {', '.join(empty)}", file=sys.stderr)


def recheck_quarantine(datasets: Sequence[VideoDataset], info: DistInfo) -> list[str]:
    """On ``--resume``: try the quarantined videos of ``datasets`` again; those that read
    now are used (and leave the quarantine file, rank 0 rewriting it). Returns their paths."""
    recovered: list[str] = []
    for ds in datasets:
        recovered += ds.recheck_quarantine(rewrite=info.is_main)
    if recovered and info.is_main:
        print(f"{len(recovered)} quarantined video(s) read again and are used from now on: "
              f"{', '.join(recovered)}", file=sys.stderr)
    return recovered


def probe_dropped(dataset: VideoDataset, sampler: EpochSampler) -> None:
    """Load the items this epoch's sampler left out (the partial last batch) that no
    epoch has trained on yet, so an unreadable one is quarantined like every video
    training touches. This runs in rank 0's main process while every GPU waits: items an
    earlier epoch's loader read (nearly all of them after the first epoch) are not
    decoded again."""
    for index in sampler.never_trained_dropped():
        dataset[index]


def save_or_explain(run_dir: Path, save: Callable[[], object]) -> None:
    """``save()`` a checkpoint; if the write fails, say which checkpoint is still ``last``
    and how to continue."""
    try:
        save()
    except WriteFailed as exc:
        pointer = Path(run_dir) / ckpt.CKPT_DIR / "last.txt"
        last = pointer.read_text().strip() if pointer.is_file() else ""
        kept = f"'last' is still {last}" if last else "no checkpoint was written"
        raise WriteFailed(f"{exc}; {kept}; free space, then continue with "
                          f"--resume {run_dir}") from None
