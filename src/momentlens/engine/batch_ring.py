"""Training batches through shared memory that stays mapped: a ring of slots per worker.

A DataLoader worker normally puts every batch into a *new* shared-memory file, and the
main process maps it, reads it once and unmaps it. Each 4 KiB page of it is then a page
fault in both processes: for a batch of 8 r3d clips (4.8 MB) about 1,200 faults a side,
milliseconds of the main process's time per batch, taken from the cores the workers
decode on (and, on CUDA, from the thread that pins the batches).

:class:`RingCollate` (the training loader's ``collate_fn``) instead keeps a few slots of
shared memory in each worker, made once for the worker's life, and stacks each batch's
clips into a free one. Torch sends a storage that is already shared by its handle, and
the main process keeps every slot it has seen mapped (:data:`_MAPPED`), so a slot that
comes back is the mapping it already has: no new file, no page faults, on either side.

A slot carries a one-byte flag, in the same shared memory, after the clips: the worker
sets it when it fills the slot; the main process clears it when the batch's clip tensor
is freed (a ``weakref.finalize`` registered when the batch arrives: after the
normalisation copied it, the pinning thread pinned it, or the batch was dropped). A
worker only fills a slot whose flag is clear, so a batch is never overwritten while the
main process can still read it. A worker whose slots are all held (a caller keeping its
batches) waits :attr:`RingCollate.wait_s`, then makes an ordinary batch, as without the
ring. Labels and item indices travel in the message itself (a few bytes).

The clips of a batch must not be kept, nor viewed, past the step that uses them: the
training loop copies them (normalisation on the CPU, pinning on CUDA) and lets go.
"""

from __future__ import annotations

import collections
import time
import uuid
import weakref
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate, get_worker_info

#: Bytes after a slot's clips: the flag (byte 0), padding to keep slots aligned.
TRAILER = 64
#: Slots the main process keeps mapped (all rings together) before dropping the oldest.
MAPPED_MAX = 1024

# (ring, data_ptr of a slot's flag) -> that flag (a view: it keeps the slot mapped)
_MAPPED: collections.OrderedDict[tuple[str, int], torch.Tensor] = collections.OrderedDict()


def _flag_of(storage: torch.UntypedStorage, offset: int) -> torch.Tensor:
    """The one-byte flag at ``offset`` of ``storage``, as a uint8 tensor of shape (1,)."""
    return torch.empty(0, dtype=torch.uint8).set_(storage, offset, (1,), (1,))


def _release(flag: torch.Tensor) -> None:
    flag.zero_()


class RingBatch:
    """``(clips, labels, indices)`` of one batch whose clips live in a worker's slot.

    Unpacks (and indexes) like the tuple the default collate makes. In the main process
    it registers its slot as mapped and arranges for the slot's flag to be cleared when
    the clip tensor is freed. ``pin_memory`` (the loader's pinning thread, on CUDA)
    returns a plain tuple of pinned copies, which frees the slot at once."""

    def __init__(self, clips: torch.Tensor, labels: np.ndarray, indices: np.ndarray,
                 flag_offset: int, ring: str = "") -> None:
        self.clips, self.labels, self.indices = clips, labels, indices
        self.flag_offset, self.ring = flag_offset, ring

    def __setstate__(self, state: dict[str, Any]) -> None:  # unpickled in the main process
        self.__dict__.update(state)
        flag = _flag_of(self.clips.untyped_storage(), self.flag_offset)
        key = (self.ring, flag.data_ptr())
        if key in _MAPPED:
            _MAPPED.move_to_end(key)
        else:
            _MAPPED[key] = flag
            while len(_MAPPED) > MAPPED_MAX:
                _MAPPED.popitem(last=False)
        weakref.finalize(self.clips, _release, flag)

    def _items(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.clips, torch.from_numpy(self.labels), torch.from_numpy(self.indices)

    def __iter__(self):  # noqa: ANN204 - unpacks as (clips, labels, indices)
        return iter(self._items())

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> torch.Tensor:
        return self._items()[i]

    def pin_memory(self, device: Any = None) -> tuple[torch.Tensor, ...]:
        return tuple(t.pin_memory() for t in self._items())


class RingCollate:
    """The training loader's ``collate_fn``: clips stacked into a slot of this worker's
    ring (module doc), labels and indices as small arrays; in the main process (no
    workers), or when no slot fits or is free in time, the default collate."""

    def __init__(self, slots: int, wait_s: float = 0.02, ring: str | None = None) -> None:
        self.slots, self.wait_s = int(slots), float(wait_s)
        self.ring = ring or uuid.uuid4().hex  # names this loader's slots in the main process
        self._ring: list[tuple[torch.Tensor, torch.Tensor]] = []  # (slot bytes, flag)
        self._next = 0

    def __getstate__(self) -> dict[str, Any]:  # each worker makes its own slots
        return {"slots": self.slots, "wait_s": self.wait_s, "ring": self.ring}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["slots"], state["wait_s"], state["ring"])

    def forget(self) -> None:
        """Unmap, in the main process, the slots of this loader's workers (call it once
        they are stopped; batches still held keep their own slot alive)."""
        for key in [k for k in _MAPPED if k[0] == self.ring]:
            del _MAPPED[key]

    def __call__(self, items: list[tuple[Any, ...]]) -> Any:
        clips = [item[0] for item in items]
        if get_worker_info() is None or not all(isinstance(c, torch.Tensor) for c in clips):
            return default_collate(items)
        shape = (len(clips), *clips[0].shape)
        if any(c.shape != clips[0].shape or c.dtype != clips[0].dtype for c in clips):
            return default_collate(items)
        nbytes = int(np.prod(shape)) * clips[0].element_size()
        slot = self._free_slot(nbytes)
        if slot is None:
            return default_collate(items)
        data, flag = slot
        out = data[:nbytes].view(clips[0].dtype).view(shape)
        torch.stack(clips, out=out)
        flag.fill_(1)
        labels = np.stack([np.asarray(item[1]) for item in items])
        indices = np.asarray([item[2] for item in items], dtype=np.int64)
        return RingBatch(out, labels, indices, flag.storage_offset(), self.ring)

    def _free_slot(self, nbytes: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A slot of at least ``nbytes`` whose flag is clear, made on first need; waits up
        to ``wait_s`` for one to be freed; ``None`` when none fits or none came free."""
        size = self._ring[0][0].numel() - TRAILER if self._ring else nbytes
        if nbytes > size:
            return None  # bigger than the first batch, which sized the slots
        if len(self._ring) < self.slots:
            try:
                data = torch.zeros(size + TRAILER, dtype=torch.uint8).share_memory_()
            except RuntimeError:  # shared memory exhausted: keep the slots made so far
                self.slots = len(self._ring)
            else:
                self._ring.append((data, data[size:size + 1]))
        if not self._ring:
            return None
        deadline = time.monotonic() + self.wait_s
        while True:
            for k in range(len(self._ring)):
                slot = self._ring[(self._next + k) % len(self._ring)]
                if int(slot[1]) == 0:
                    self._next = (self._next + k + 1) % len(self._ring)
                    return slot
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.001)
