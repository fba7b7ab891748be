"""How training batches are fed: one loader for the whole run, workers kept across epochs.

The loader is made once (``persistent_workers``), so its workers start once per run, not
once per epoch. Its workers hold copies of the dataset made when they started, so the
epoch cannot be told to them by ``dataset.set_epoch``: the sampler hands out
``(epoch, index)`` keys instead (:class:`KeyedSampler`) and :class:`EpochKeyed` sets the
epoch of its copy before loading each item. Item randomness stays a function of
``(seed, epoch, index)`` and the batch order of ``(seed, epoch)``, whatever the number
of workers and whether they persist, so a resumed run replays the uninterrupted one.

Under several processes on one machine each process gets its share of the cores
(:func:`loader_workers`): workers x processes never exceed the cores it may use.

Batches come through a ring of shared-memory slots per worker that stay mapped for the
run (:mod:`momentlens.engine.batch_ring`): no new shared file and no page faults per
batch, in the workers or in the main process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import torch

from momentlens.data.dataset import VideoDataset
from momentlens.data.transforms import ClipTransform
from momentlens.engine.batch_ring import RingCollate
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.inference import PREFETCH_FACTOR, make_loader
from momentlens.utils import MomentlensError

log = logging.getLogger(__name__)

#: Shared-memory slots per loader worker (:mod:`momentlens.engine.batch_ring`): the
#: batches it may have ahead, the one being used and the one before it.
RING_SLOTS = PREFETCH_FACTOR + 2


class EpochKeyed:
    """``dataset`` indexed by ``(epoch, index)`` keys (a map-style dataset by protocol)."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if getattr(self.dataset, "epoch", None) != epoch:
            self.dataset.set_epoch(epoch)
        return self.dataset[index]


class KeyedSampler(torch.utils.data.Sampler[tuple[int, int]]):
    """``sampler``'s indices, each paired with the sampler's epoch at iteration time."""

    def __init__(self, sampler: EpochSampler) -> None:
        self.sampler = sampler

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.sampler.epoch
        return ((epoch, i) for i in self.sampler)

    def __len__(self) -> int:
        return len(self.sampler)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def loader_workers(workers: int, info: DistInfo, cores: int | None = None,
                   local_processes: int | None = None) -> int:
    """This process's loader workers: ``workers``, capped at its share of the cores.

    ``local_processes``: training processes on this machine (torchrun's
    ``LOCAL_WORLD_SIZE``; the world size when unset). Each gets ``cores //
    local_processes`` workers at most, so workers x processes <= cores."""
    cores = usable_cores() if cores is None else cores
    if local_processes is None:
        local_processes = int(os.environ.get("LOCAL_WORLD_SIZE", info.world_size))
    share = cores // max(local_processes, 1)
    if workers > share:
        log.info("loader workers: %d per process, not %d: %d cores shared by %d process(es)",
                 share, workers, cores, local_processes)
        return share
    return workers


def device_augment_dataset(dataset: VideoDataset) -> tuple[bool, float]:
    """Make ``dataset``'s workers only decode, sample and resize: each clip becomes a
    ``resize x resize`` square (short side to ``resize``, long side centre-cropped),
    colour augmentation unchanged; the crop and the flip move to the device. Returns
    ``(random crop, flip probability)`` of the transform it replaced."""
    old = dataset.transform
    if old.crop == "multiscale":
        raise MomentlensError("device_augment does random or centre crops; the input "
                              "record asks for the multi-scale corner crop")
    side = int(old.resize)
    dataset.transform = ClipTransform(size=side, resize=side, train=True, crop="center",
                                      flip_p=0.0)
    dataset.size = side  # the zero clip that replaces an unreadable video
    return old.crop == "random", float(old.flip_p)


class TrainFeed:
    """The training loader of a run: made on first use, reused every epoch, closed once."""

    def __init__(self, dataset: VideoDataset, sampler: EpochSampler, workers: int,
                 device: torch.device, persistent: bool = True) -> None:
        self.dataset, self.sampler = dataset, sampler
        self.workers, self.device, self.persistent = workers, device, persistent
        self._loader: torch.utils.data.DataLoader | None = None

    def epoch(self, epoch: int, start_batch: int = 0) -> torch.utils.data.DataLoader:
        """The loader of ``epoch``, starting at batch ``start_batch`` of this rank."""
        self.dataset.set_epoch(epoch)  # for the main process (dropped items, workers=0)
        self.sampler.set_epoch(epoch, start_batch=start_batch)
        if self._loader is None or not self.persistent:
            self.close()
            self._loader = make_loader(EpochKeyed(self.dataset), self.sampler.batch_size,
                                       self.workers, KeyedSampler(self.sampler), self.device,
                                       persistent=self.persistent and self.workers > 0,
                                       collate_fn=RingCollate(RING_SLOTS))
        return self._loader

    def close(self) -> None:
        """Stop the workers now (they would otherwise linger until garbage collection)."""
        loader, self._loader = self._loader, None
        iterator = getattr(loader, "_iterator", None) if loader is not None else None
        if iterator is not None and hasattr(iterator, "_shutdown_workers"):
            iterator._shutdown_workers()
        if loader is not None:
            loader._iterator = None
            if isinstance(loader.collate_fn, RingCollate):
                loader.collate_fn.forget()

    def __enter__(self) -> TrainFeed:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
