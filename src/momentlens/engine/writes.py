"""Write errors as one line: which file, and why (``No space left on device``).

A full disk surfaces as an ``OSError`` from Python's own writes, but as a
``SafetensorError`` from safetensors and a ``RuntimeError`` ("PytorchStreamWriter failed
writing file") from ``torch.save``. :func:`writing` turns all of them into
:class:`WriteFailed`, a :class:`~momentlens.utils.MomentlensError` that the command line
prints without a traceback (exit status 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from momentlens.utils import MomentlensError

#: Below this many free bytes, an unexplained write failure is put down to a full disk.
NEARLY_FULL = 256 * 1024


class WriteFailed(MomentlensError):
    """A file or folder of a run could not be written."""


def _write_errors() -> tuple[type[BaseException], ...]:
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - safetensors is a dependency
        return (OSError, RuntimeError)
    return (OSError, RuntimeError, SafetensorError)


def _free_bytes(path: Path) -> int | None:
    for folder in (path, *path.parents):
        if folder.exists():
            try:
                return shutil.disk_usage(folder).free
            except OSError:
                return None
    return None


def cause(exc: BaseException, path: str | os.PathLike[str]) -> str:
    """Why writing ``path`` failed, in a few words (the OS's words where it gave an errno)."""
    code = getattr(exc, "errno", None)
    if isinstance(exc, OSError) and code:
        return os.strerror(code)
    text = str(exc)
    if "No space left" in text or "os error 28" in text or "StorageFull" in text:
        return os.strerror(errno.ENOSPC)
    free = _free_bytes(Path(path))
    if free is not None and free < NEARLY_FULL:
        return os.strerror(errno.ENOSPC)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:300]


@contextlib.contextmanager
def writing(path: str | os.PathLike[str], what: str = "") -> Iterator[None]:
    """Run a write of ``path``; any write error becomes "cannot write [what ]PATH: CAUSE"."""
    try:
        yield
    except WriteFailed:
        raise
    except _write_errors() as exc:
        label = f"{what} {path}" if what else str(path)
        raise WriteFailed(f"cannot write {label}: {cause(exc, path)}") from None
