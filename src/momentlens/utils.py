"""Small shared helpers: user-facing errors and their "did you mean" hints, atomic file
writes, progress bars."""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class MomentlensError(Exception):
    """An expected failure with a message a user can act on.

    The CLI prints these without a traceback and exits with status 2.
    """


def did_you_mean(word: object, known: Iterable[str]) -> str:
    """`` (did you mean a or b?)`` with up to three close matches of ``word`` among
    ``known`` (:func:`difflib.get_close_matches`), or ``""`` when none is close."""
    close = difflib.get_close_matches(str(word), list(known), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(close)}?)" if close else ""


def _fsync_dir(path: Path) -> None:
    # Make the rename itself durable; not every platform allows opening a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it into place on success.

    The temporary file lives in the same directory (so the rename is atomic on POSIX)
    and starts with a dot, so a reader scanning for final names never sees it. On any
    exception the temporary file is removed and ``final`` is left untouched. The
    suffix defaults to the final name's, which matters for writers that pick a format
    from the extension (FFmpeg muxers, PIL).
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=final.suffix if suffix is None else suffix,
        dir=final.parent,
    )
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; a finished file gets the usual permissions (0666 - umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, final)
        _fsync_dir(final.parent)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike[str], obj: Any, indent: int = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def progress(
    iterable: Iterable[T], total: int | None = None, desc: str = "", unit: str = "it",
    disable: bool | None = None, **kwargs: Any,
) -> Iterable[T]:
    """A tqdm progress bar on stderr (items/s and ETA), silent when MOMENTLENS_QUIET is set."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = bool(os.environ.get("MOMENTLENS_QUIET"))
    if not sys.stderr.isatty():
        # In logs and CI, a line every few seconds rather than a carriage-return flood.
        kwargs.setdefault("mininterval", 5.0)
    if iterable is not None:
        if total is None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        # tqdm.auto's bar (tqdm.asyncio's underneath) calls iter() on the iterable when
        # it is made and its loop calls iter() again: a DataLoader then started a second
        # set of workers, and the first set decoded batches that nobody read. One
        # iterator, made here, serves both.
        iterable = iter(iterable)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable,
                dynamic_ncols=True, file=sys.stderr, **kwargs)
