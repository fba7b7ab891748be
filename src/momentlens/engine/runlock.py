"""One owner per run folder: an advisory lock, refusing to train over a finished run, and
``--overwrite`` that never loses the old run before the new one has a checkpoint.

While a process trains in ``RUN``, it holds ``fcntl.flock`` on ``RUN/.lock`` (the file
also names its process id). The kernel drops the lock when the process ends, however it
ends (``kill -9`` included), so a lock is never stale; a second ``train`` or
``--resume`` on the folder stops at once with "RUN is in use by process PID". Under
``torchrun`` only rank 0 takes it. Forked children (DataLoader workers) close their copy
of the lock file at once, so a lock lives exactly as long as its process.

With ``--overwrite``, the old run's files are moved into ``RUN/.replaced-run`` and
removed once the new run has written its first checkpoint; if the new run fails before
that, they are moved back. Holding the lock also proves that no other process is
writing, so temporaries a dead process left behind can be removed at start-up.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import sys
from pathlib import Path

from momentlens.engine import checkpoint as ckpt
from momentlens.engine.distributed import DistInfo, all_gather_objects
from momentlens.utils import MomentlensError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
REPLACED = ".replaced-run"
#: Files and folders whose presence makes a folder a run (a non-empty ``checkpoints/``).
RUN_MARKERS = ("config.yaml", "metrics.jsonl", "checkpoints")

_HELD: list[int] = []  # file descriptors of the locks this process holds


def _close_in_child() -> None:
    for fd in _HELD:
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


class RunInUse(MomentlensError):
    """Another live process holds the run folder."""


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir/.lock`` (created with the folder)."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.fd: int | None = None

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise RunInUse(f"{self.run_dir} is in use by process {_owner(path)}; wait for "
                           "it to finish or stop it (it saves a checkpoint on SIGTERM)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        _HELD.append(fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        if self.fd in _HELD:
            _HELD.remove(self.fd)
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _owner(path: Path) -> str:
    try:
        return path.read_text().strip() or "(unknown)"
    except OSError:
        return "(unknown)"


def holds_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` already holds a run (settings, metrics or checkpoints)."""
    for name in RUN_MARKERS:
        entry = run_dir / name
        if entry.is_file() or (entry.is_dir() and any(entry.iterdir())):
            return True
    return False


def claim(run_dir: Path, resume: bool, overwrite: bool) -> bool:
    """Check that a new run may start in ``run_dir`` (the lock held); with ``overwrite``,
    move the old run aside. Returns whether there is a replaced run to finish off."""
    _settle_replaced(run_dir)
    if resume or not holds_run(run_dir):
        return False
    if not overwrite:
        raise MomentlensError(
            f"{run_dir} already holds a run; continue it with --resume {run_dir}, or start "
            "a new one there with --overwrite (or choose another --out)")
    aside = run_dir / REPLACED
    aside.mkdir()
    for entry in run_dir.iterdir():
        if entry.name not in (LOCK_FILE, REPLACED):
            os.rename(entry, aside / entry.name)
    print(f"--overwrite: the previous run in {run_dir} is kept in {aside} until the new "
          "run's first checkpoint, then removed", file=sys.stderr)
    return True


def finish_replace(run_dir: Path) -> None:
    """The new run has its first checkpoint: remove the run it replaced."""
    shutil.rmtree(run_dir / REPLACED, ignore_errors=True)
    print(f"--overwrite: removed the previous run of {run_dir} (the new run has its first "
          "checkpoint)", file=sys.stderr)


def undo_replace(run_dir: Path) -> None:
    """The new run failed before its first checkpoint: put the old run back."""
    aside = run_dir / REPLACED
    if not aside.is_dir():
        return
    for entry in run_dir.iterdir():
        if entry.name not in (LOCK_FILE, REPLACED):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for entry in aside.iterdir():
        os.rename(entry, run_dir / entry.name)
    aside.rmdir()
    print(f"--overwrite: the new run stopped before its first checkpoint; the previous run "
          f"of {run_dir} is back in place", file=sys.stderr)


def _settle_replaced(run_dir: Path) -> None:
    # A process that died during --overwrite: before the new run's first checkpoint the
    # old run is restored, after it the old run is removed.
    if not (run_dir / REPLACED).is_dir():
        return
    if (run_dir / "checkpoints" / "last.txt").is_file():
        shutil.rmtree(run_dir / REPLACED, ignore_errors=True)
    else:
        undo_replace(run_dir)


def remove_orphans(run_dir: str | os.PathLike[str]) -> list[Path]:
    """At start-up, with the run's lock held (so no other process is writing): remove
    temporary checkpoint folders and files a dead process left behind, and checkpoint
    folders no pointer names. Returns what was removed."""
    run_dir = Path(run_dir)
    root = run_dir / ckpt.CKPT_DIR
    removed = ckpt.remove_unreferenced(root) if root.is_dir() else []
    names = ("config.yaml", "input.json", "env.json", "metrics.jsonl", "quarantine.jsonl")
    temps = [f for n in names for f in run_dir.glob(f".{n}.*")]
    temps += [f for n in ckpt.POINTERS for f in root.glob(f".{n}.txt.*")]
    for f in temps:
        f.unlink(missing_ok=True)
    return removed + temps


class Ownership:
    """A training process's hold on its run folder: rank 0 locks it and checks that a
    new run may start there; every rank learns rank 0's verdict."""

    def __init__(self, run_dir: Path, info: DistInfo) -> None:
        self.run_dir, self.info = run_dir, info
        self.lock = RunLock(run_dir)
        self.replacing = False

    def take(self, resume: bool, overwrite: bool) -> None:
        problem = None
        if self.info.is_main:
            try:
                self.lock.acquire()
                self.replacing = claim(self.run_dir, resume, overwrite)
                removed = remove_orphans(self.run_dir)
                if removed:
                    print(f"removed {len(removed)} temporary file(s) left in {self.run_dir} "
                          f"by a process that ended: {', '.join(p.name for p in removed)}",
                          file=sys.stderr)
            except MomentlensError as exc:
                problem = str(exc)
        problem = all_gather_objects(problem, self.info)[0]
        if problem is not None:
            raise MomentlensError(problem)

    def first_checkpoint(self) -> None:
        if self.replacing:
            finish_replace(self.run_dir)
            self.replacing = False

    def abandon(self) -> None:
        if self.replacing:
            undo_replace(self.run_dir)
            self.replacing = False

    def release(self) -> None:
        self.lock.release()
