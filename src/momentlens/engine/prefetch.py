"""Batches onto the device without stalling the host: copy, augment, normalise, one ahead.

:class:`DeviceInput` turns a loader batch ``(uint8 clips, labels, indices)`` into the
model's float input on the device: a ``non_blocking`` copy of the uint8 clips (pinned by
the loader on CUDA), the optional crop and flip there (``device_augment``), and the
normalisation with constants put on the device once (``torch.tensor(..., device=cuda)``
in every step would be a host sync each time).

:class:`Prefetcher` yields those batches. On CUDA the next batch is taken from the loader
and its copy, crop and normalisation are queued on a side stream while the current one
computes (the main stream waits for that stream before using a batch, and the batch's
memory is recorded on the main stream so the allocator does not reuse it early). On any
other device it is a plain loop: nothing ahead, nothing changed.

On the CPU the normalisation is the main process's own work, taken from the cores the
loader workers decode on, so it is kept small: the float batch is written into a buffer
kept from an earlier step (a fresh 19 MB tensor per batch of 8 r3d clips costs thousands
of page faults, as much again as the arithmetic) by a cast, then a multiply and a
subtract in place (no multiply where the scale is 1), the same two roundings as
:func:`~momentlens.data.normalize.normalize`.
A buffer is reused only when nothing else holds it (no Python name, view or autograd
graph), so a caller that keeps its batches gets fresh tensors.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch

from momentlens.data.device_transforms import crop_flip, crop_flip_params
from momentlens.data.normalize import normalize_affine
from momentlens.models.spec import InputSpec


@dataclass(frozen=True)
class DeviceAugment:
    """Crop and flip on the device, drawn from ``(seed, epoch, index)``."""

    seed: int
    size: int
    random_crop: bool = True
    flip_p: float = 0.5

    def params(self, epoch: int, indices: torch.Tensor, src_hw: tuple[int, int]
               ) -> torch.Tensor:
        """int64 ``(B, 3)`` on the CPU: top, left, flip of each item."""
        return torch.from_numpy(crop_flip_params(self.seed, epoch, indices.cpu().numpy(),
                                                 src_hw, self.size, self.random_crop,
                                                 self.flip_p))


class DeviceInput:
    """``(clips uint8, labels, indices)`` on the host -> ``(x float, labels)`` on ``device``."""

    def __init__(self, spec: InputSpec, device: torch.device, channels_last: bool = False,
                 augment: DeviceAugment | None = None, epoch: int = 0) -> None:
        a, b = normalize_affine(spec.norm, spec.mean, spec.std)
        self.scale, self.shift = a.to(device), b.to(device)
        # The *_255 presets (3D-ResNets' Kinetics means, no std) scale by exactly 1.0:
        # on the CPU that multiply is a whole pass over the batch for nothing (x * 1.0
        # is x, so leaving it out changes no bit).
        self.unit_scale = bool((a == 1).all())
        self.device, self.channels_last = device, channels_last
        self.augment, self.epoch = augment, epoch
        self._buffers = _BufferPool()

    def __call__(self, clips: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        x = clips.to(self.device, non_blocking=True)
        if self.augment is not None:
            params = self.augment.params(self.epoch, indices, tuple(clips.shape[-2:]))
            if self.device.type == "cuda":
                params = params.pin_memory()
            x = crop_flip(x, params.to(self.device, non_blocking=True), self.augment.size)
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"expected clips (B, 3, T, H, W), got {tuple(x.shape)}")
        layout = torch.channels_last_3d if self.channels_last else torch.contiguous_format
        if self.device.type == "cpu":
            # normalize's x.float() * a - b, each step rounded as there (bit-identical;
            # tested), into a kept buffer already in the model's layout (module doc).
            out = self._buffers.take(x.shape, layout).copy_(x)
            if not self.unit_scale:
                out.mul_(self.scale)
            x = out.sub_(self.shift)
        else:
            # uint8 * float32 promotes exactly, then the shift in place (bit-identical).
            x = torch.mul(x, self.scale).sub_(self.shift)
            if self.channels_last:
                x = x.contiguous(memory_format=layout)
        return x, labels.to(self.device, non_blocking=True)


class _BufferPool:
    """A few float32 CPU buffers, handed out again once nothing but the pool holds them."""

    KEEP = 3  # one in use, one the caller's last batch, one spare

    def __init__(self) -> None:
        self.buffers: list[torch.Tensor] = []

    def take(self, shape: torch.Size, layout: torch.memory_format) -> torch.Tensor:
        for i in range(len(self.buffers)):
            if _free(self.buffers, i) and self.buffers[i].shape == shape \
                    and self.buffers[i].is_contiguous(memory_format=layout):
                return self.buffers[i]
        buf = torch.empty(shape, dtype=torch.float32, memory_format=layout)
        self.buffers = [buf, *self.buffers][:self.KEEP]
        return buf


def _free(buffers: list[torch.Tensor], i: int) -> bool:
    """Whether only the list ``buffers`` holds its item ``i``: no other Python reference,
    no other holder of the tensor (an autograd graph that saved it is one) or of its
    storage (a view is one). Where torch does not say, the buffer counts as held."""
    # getrefcount sees the list's reference and its own argument's.
    if sys.getrefcount(buffers[i]) > 2:
        return False
    try:
        tensor_holders = buffers[i]._use_count()
        storage = buffers[i].untyped_storage()
        storage_holders = torch._C._storage_Use_Count(storage._cdata)
    except (AttributeError, RuntimeError):
        return False
    return tensor_holders == 1 and storage_holders <= 2  # the tensor and ``storage``


class Prefetcher:
    """Iterates ``loader`` through ``prepare``; one batch ahead on a CUDA side stream."""

    def __init__(self, loader: Iterable, prepare: Callable[..., tuple[torch.Tensor, ...]],
                 device: torch.device) -> None:
        self.loader, self.prepare, self.device = loader, prepare, device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def __len__(self) -> int:
        return len(self.loader)  # type: ignore[arg-type]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        batches = iter(self.loader)
        if self.stream is None:
            for batch in batches:
                yield self.prepare(*batch)
            return
        ahead = self._queue(batches)
        while ahead is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self.stream)  # the copy and normalisation are done first
            for t in ahead:
                t.record_stream(main)  # made on the side stream, used on the main one
            current, ahead = ahead, self._queue(batches)
            yield current

    def _queue(self, batches: Iterator) -> tuple[torch.Tensor, ...] | None:
        batch = next(batches, None)
        if batch is None:
            return None
        with torch.cuda.stream(self.stream):
            return self.prepare(*batch)
