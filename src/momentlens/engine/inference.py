"""Scoring a dataset with a model: the loop shared by validation, ``evaluate`` and ``predict``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from momentlens.engine.distributed import DistInfo, EpochSampler, all_gather_objects
from momentlens.engine.runtime import autocast
from momentlens.engine.signals import ignore_stop_signals
from momentlens.models.spec import InputSpec
from momentlens.utils import progress


@dataclass
class Scores:
    """Softmax scores of the items of a dataset, in item order.

    ``indices`` (V,) item indices; ``labels`` (V,); ``clip_probs`` (V, N, K): one row of
    class probabilities per view (N clips x crops); ``video_probs`` (V, K) their mean.
    """

    indices: np.ndarray
    labels: np.ndarray
    clip_probs: np.ndarray

    @property
    def video_probs(self) -> np.ndarray:
        return self.clip_probs.mean(axis=1)


@dataclass(frozen=True)
class Normalizer:
    """Turns uint8 clips on the device into the model's float input, as ``spec`` says."""

    spec: InputSpec
    channels_last: bool = False

    def __call__(self, clips: torch.Tensor) -> torch.Tensor:
        x = self.spec.normalize(clips)
        if self.channels_last and x.ndim == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return x


def make_loader(dataset: Any, batch_size: int, workers: int, sampler: torch.utils.data.Sampler,
                device: torch.device, persistent: bool = False) -> torch.utils.data.DataLoader:
    """A loader of ``dataset`` in ``sampler`` order. Its workers ignore SIGINT and SIGTERM
    (a signal to the process group is the main process's to handle: see
    :mod:`momentlens.engine.signals`); item randomness comes from the dataset's own
    ``(seed, epoch, index)`` generators, never from which worker loads an item."""
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=persistent, prefetch_factor=4,
                      worker_init_fn=ignore_stop_signals)
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
        pin_memory=device.type == "cuda", drop_last=False, **kwargs)


@torch.no_grad()
def score_dataset(
    model: torch.nn.Module,
    dataset: Any,
    device: torch.device,
    normalizer: Normalizer,
    batch_size: int = 8,
    workers: int = 0,
    amp: torch.dtype | None = None,
    info: DistInfo | None = None,
    desc: str = "eval",
) -> Scores:
    """Softmax scores of every item of ``dataset`` (each video exactly once).

    Items are ``(clip, label, index)`` with ``clip`` uint8 ``(C, T, H, W)`` or, with several
    views, ``(N, C, T, H, W)``. Under several processes each rank scores a disjoint
    share and the shares are gathered, so every rank returns the complete result.
    """
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    sampler = EpochSampler(len(dataset), batch_size, info, shuffle=False)
    loader = make_loader(dataset, batch_size, workers, sampler, device)
    idx_parts, label_parts, prob_parts = [], [], []
    bar = progress(loader, total=len(loader), desc=desc, unit="batch",
                   disable=None if info.is_main else True)
    for clips, labels, indices in bar:
        views = clips.shape[1] if clips.ndim == 6 else 1
        flat = clips.reshape(-1, *clips.shape[-4:]).to(device, non_blocking=True)
        with autocast(device, amp):
            logits = model(normalizer(flat))
        probs = F.softmax(logits.float(), dim=1).reshape(len(labels), views, -1)
        idx_parts.append(indices.numpy())
        label_parts.append(labels.numpy())
        prob_parts.append(probs.cpu().numpy())
    model.train(was_training)
    k = model.classifier.out_features if hasattr(model, "classifier") else 0
    local = (
        np.concatenate(idx_parts) if idx_parts else np.zeros(0, dtype=np.int64),
        np.concatenate(label_parts) if label_parts else np.zeros(0, dtype=np.int64),
        np.concatenate(prob_parts) if prob_parts else np.zeros((0, 1, k), dtype=np.float32),
    )
    parts = all_gather_objects(local, info)
    indices = np.concatenate([p[0] for p in parts])
    order = np.argsort(indices, kind="stable")
    return Scores(
        indices=indices[order],
        labels=np.concatenate([p[1] for p in parts])[order],
        clip_probs=np.concatenate([p[2] for p in parts])[order],
    )
