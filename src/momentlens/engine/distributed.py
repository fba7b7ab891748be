"""Several processes, one or many machines, with PyTorch's own engine (``torchrun``).

``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint HOST:PORT ...] -m momentlens train ...``
sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`setup` reads them and joins the
process group (NCCL on CUDA, gloo on CPU). Without them everything runs in one process.

The sampler here replaces ``DistributedSampler``: one permutation per epoch drawn from
``(seed, epoch)``, split across ranks, and able to start part-way into an epoch, which is
what resuming a run killed mid-epoch needs.
"""

from __future__ import annotations

import atexit
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from momentlens.utils import MomentlensError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def launched() -> DistInfo:
    """This process's place as ``torchrun`` set it (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), without joining a group; one process outside torchrun. The one
    reader of those variables: a malformed or half-set environment (``WORLD_SIZE`` set by
    hand without ``RANK``) is named here rather than failing with a ``KeyError``."""
    env = os.environ

    def number(key: str, default: str | None) -> int:
        text = env.get(key, default)
        if text is None:
            raise MomentlensError(f"WORLD_SIZE={env.get('WORLD_SIZE')} is set but {key} is "
                                  "not; start the processes with torchrun")
        try:
            return int(text)
        except ValueError:
            raise MomentlensError(f"{key}={text!r} is not a whole number") from None

    world = number("WORLD_SIZE", "1")
    if world <= 1:
        return DistInfo()
    rank, local_rank = number("RANK", None), number("LOCAL_RANK", "0")
    if not 0 <= rank < world:
        raise MomentlensError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return DistInfo(rank, world, local_rank)


def setup(device_type: str) -> DistInfo:
    """Join the process group if launched by torchrun; a no-op otherwise."""
    info = launched()
    if info.enabled and not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
        atexit.register(_before_exit)
    return info


def launch_rank() -> int:
    """This process's rank as ``torchrun`` set it (0 outside torchrun), without joining
    a group: for commands whose work one process does."""
    return launched().rank


def cleanup() -> None:
    """Leave the process group, if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _before_exit() -> None:
    """At exit, while the interpreter is still whole: let gloo's worker threads drop
    what they hold, then leave the group.

    A worker thread that drops the last reference to a finished collective's tensors
    needs the GIL; once the interpreter is finalising, such a thread is ended inside a
    C++ destructor and the process aborts ("terminate called without an active
    exception", exit -6: about 1 torchrun evaluation in 13, on the rank that returned
    right after its last collective; core dump: ``AsyncAllgatherWork`` destroyed in
    ``ProcessGroupGloo::runLoop``). Leaving the group does not always join those threads
    (a group that outlives ``destroy_process_group`` was seen once a model had been
    loaded), so the main thread first gives up the GIL for a moment."""
    time.sleep(0.05)
    cleanup()


def all_gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not info.enabled:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def union_over_ranks(items: set[int], info: DistInfo) -> set[int]:
    """Every rank's ``items`` together (``items`` in a single process). Unreadable videos
    are known from each rank's quarantine file, and on several machines without a shared
    run folder each rank's file lists only its own machine's."""
    if not info.enabled:
        return set(items)
    return set().union(*all_gather_objects(set(items), info))


def rank_share(saved: Any, info: DistInfo) -> dict[str, float]:
    """This rank's part of per-rank sums saved by rank 0 (``[rank 0's, rank 1's, ...]``,
    see ``checkpoint.restore_training``), or the one dict a single process saved. Resumed with
    another number of processes, rank 0 takes the totals and the others start at zero."""
    if isinstance(saved, dict):
        return saved if info.rank == 0 else {}
    if len(saved) == info.world_size:
        return dict(saved[info.rank])
    if info.rank != 0:
        return {}
    return {k: sum(part.get(k, 0) for part in saved) for k in saved[0]} if saved else {}


def all_reduce_sums(values: list[float], info: DistInfo) -> list[float]:
    """Each of ``values`` summed over all processes (``values`` in a single process)."""
    if not info.enabled:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


class EpochSampler(torch.utils.data.Sampler[int]):
    """Indices of one rank for one epoch, deterministic in ``(seed, epoch)``.

    Training (``shuffle=True``): a permutation of the dataset, truncated to a multiple of
    ``batch_size * world_size`` so every rank takes the same number of full steps, and
    dealt out batch by batch (rank r takes the r-th slice of each global batch).
    ``start_batch`` skips the batches this rank already trained on in this epoch.

    Evaluation (``shuffle=False``): rank r takes ``r, r + world, r + 2 world, ...`` with no
    padding, so across ranks every item is seen exactly once.
    """

    def __init__(self, length: int, batch_size: int, info: DistInfo, seed: int = 0,
                 shuffle: bool = True, max_batches: int = 0) -> None:
        self.length = length
        self.batch_size = batch_size
        self.info = info
        self.seed = seed
        self.shuffle = shuffle
        self.max_batches = max_batches
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def batches_per_epoch(self) -> int:
        if not self.shuffle:
            return -(-len(self._eval_indices()) // self.batch_size)
        full = self.length // (self.batch_size * self.info.world_size)
        return min(full, self.max_batches) if self.max_batches else full

    def _eval_indices(self) -> list[int]:
        return list(range(self.info.rank, self.length, self.info.world_size))

    def _order(self, epoch: int | None = None) -> list[int]:
        epoch = self.epoch if epoch is None else epoch
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.length, generator=g).tolist()

    def dropped(self) -> list[int]:
        """Training: the items of this epoch's permutation after its last full global
        batch (the partial batch no rank trains on)."""
        per_global = self.batch_size * self.info.world_size
        return self._order()[self.length // per_global * per_global:] if self.shuffle else []

    def never_trained_dropped(self) -> list[int]:
        """:meth:`dropped` items that no earlier epoch trained on either (so no loader
        has read them yet). Each epoch's permutation is drawn anew, so after the first
        epoch this is nearly always empty."""
        dropped = self.dropped()
        left = set(dropped)
        trained = self.batches_per_epoch() * self.batch_size * self.info.world_size
        for epoch in range(self.epoch - 1, -1, -1):
            if not left:
                break
            left -= set(self._order(epoch)[:trained])
        return [i for i in dropped if i in left]

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            yield from self._eval_indices()
            return
        order = self._order()
        per_global = self.batch_size * self.info.world_size
        for b in range(self.start_batch, self.batches_per_epoch()):
            start = b * per_global + self.info.rank * self.batch_size
            yield from order[start:start + self.batch_size]

    def __len__(self) -> int:
        if not self.shuffle:
            return len(self._eval_indices())
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size
