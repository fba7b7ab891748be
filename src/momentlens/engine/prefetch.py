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
"""

from __future__ import annotations

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
        self.device, self.channels_last = device, channels_last
        self.augment, self.epoch = augment, epoch

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
        # normalize's x.float() * a - b in one pass fewer: uint8 * float32
        # promotes exactly, then the shift in place (bit-identical; tested).
        x = torch.mul(x, self.scale).sub_(self.shift)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x, labels.to(self.device, non_blocking=True)


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
