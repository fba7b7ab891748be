"""Stopping a training run on SIGINT / SIGTERM: finish the step, save, exit cleanly.

A cluster (SLURM, ``scancel``, Kubernetes, ``docker stop``) and a terminal's Ctrl-C send
the signal to every process of the job, DataLoader workers included. Workers ignore both
(:func:`ignore_stop_signals`, their ``worker_init_fn``), so the loader never dies under
the main process; the main process (:class:`StopRequest`) sets a flag, the loop saves a
checkpoint at the end of the current optimiser step, shuts its loader down and the
command exits with :func:`exit_status` (128 + the signal: 143 for SIGTERM, 130 for
SIGINT). Only a second Ctrl-C (SIGINT) aborts the save: SIGTERM often arrives twice,
e.g. under SLURM, which signals every process of a job, torchrun's agent included, and
the agent then forwards its own SIGTERM to each rank. Under ``torchrun`` the ranks agree
on stopping after the same step (:meth:`StopRequest.agreed`), so rank 0's checkpoint is
one every rank reached. They agree over a gloo group of their own, on the CPU: with
NCCL, a flag reduced on the GPU and read back would make the host wait for the GPU at
every step. Once a run has stopped on SIGTERM, the process ignores further SIGTERMs (it
is already on its way out), so a second one during the teardown cannot replace the exit
status 143 with death by the signal.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # this module is imported by the command line before torch
    from momentlens.engine.distributed import DistInfo

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """A SIGTERM reached a command that has nothing to save (``evaluate``, ``predict``,
    ``cam``, ...): raised in its main thread, so that it unwinds as a Ctrl-C does (temporary
    files removed, loader workers stopped) and exits 143 with a line that says why.
    A ``BaseException``, like ``KeyboardInterrupt``, so no ``except Exception`` swallows it."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def raise_on_sigterm() -> None:
    """Make SIGTERM raise :class:`Terminated` in this process (the command line's default).

    Without it a SIGTERM (``scancel``, ``kill``, a SLURM time limit) ended an evaluation
    in silence, and its loader workers, which ignore the signal, lingered until they
    noticed the parent gone. Children forked afterwards (decoding pools) inherit the
    handler; there it puts the default action back and re-sends the signal, so they end
    exactly as before. A training run replaces it with :class:`StopRequest` while it has
    a checkpoint to save."""
    owner = os.getpid()

    def handle(signum: int, _frame: Any) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        signal.signal(signum, signal.SIG_IGN)  # the second SIGTERM of a SLURM job: ignored
        raise Terminated(signum)

    signal.signal(signal.SIGTERM, handle)


def exit_status(signum: int) -> int:
    """The exit status of a run stopped by ``signum``: 128 + its number (shell convention)."""
    return 128 + int(signum)


def ignore_stop_signals(_worker_id: int = 0) -> None:
    """``worker_init_fn`` of every loader: SIGINT and SIGTERM are the main process's to
    handle (save and stop); a worker killed by them would take the run down with it.
    The worker was started with them blocked (:func:`stop_signals_blocked`): one that
    came since is discarded here, once they are ignored."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """SIGINT and SIGTERM blocked in the calling thread while loader workers are forked.

    A forked worker inherits the mask. Between its start and its ``worker_init_fn``,
    torch installs its own SIGTERM handler in the worker, which re-raises the signal
    with the default action: a SIGTERM to the process group landing there killed the
    worker, and the main process then raised "DataLoader worker ... is killed by
    signal" instead of saving. Blocked, the signal waits until
    :func:`ignore_stop_signals` discards it. The main process gets its own copy as
    soon as the mask is restored (or in another thread meanwhile)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class StopRequest:
    """SIGINT / SIGTERM set a flag; the loop saves a checkpoint and stops at a step end."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict[int, Any] = {}
        self._pid = os.getpid()
        self._group: Any = None  # the ranks' CPU (gloo) group, made at the first agreement

    def __enter__(self) -> StopRequest:
        self._pid = os.getpid()
        for sig in STOP_SIGNALS:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, _frame: Any) -> None:
        if os.getpid() != self._pid:  # a forked worker before its worker_init_fn ran
            return
        if self.signal is not None:
            if signum == signal.SIGINT:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            return  # SIGTERM again: already saving and stopping (see below)
        self.signal = signum
        again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
        print(f"\n{signal.Signals(signum).name}: saving a checkpoint at the end of this step"
              f"{again}", file=sys.stderr)

    def agreed(self, info: DistInfo) -> bool:
        """Whether to stop now: this process's flag, or under several processes any
        rank's (a signal can reach the ranks a step apart; the first one received wins).
        Every rank calls it at the same points; the flags meet in a gloo group on the
        CPU whatever the training backend, so it never waits for the GPU.

        Every rank returns the reduced flag, never its own flag as it stands after the
        reduction: a signal that lands while the flags are being reduced (the rank sent
        0) counts at the next agreement, on every rank alike. Answering from the local
        flag there let that rank stop while the others went on to the next step, each
        then waiting for the other in a different collective until killed."""
        if not info.enabled:
            return self.signal is not None
        import torch
        import torch.distributed as dist

        if self._group is None:  # collective: every rank reaches it at the same step
            self._group = dist.new_group(backend="gloo")
        flag = torch.tensor([self.signal or 0], dtype=torch.int64)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        agreed = int(flag.item())
        if agreed and self.signal is None:
            self.signal = agreed
        return agreed != 0

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            if sig == signal.SIGTERM == self.signal:
                # Stopped by SIGTERM: the process is on its way out (the command exits
                # 143). A second SIGTERM (SLURM, torchrun's agent) must neither kill it
                # nor raise Terminated while it tears down.
                old = signal.SIG_IGN
            signal.signal(sig, old)
