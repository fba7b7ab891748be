"""Classifier-only fine-tuning on cached trunk features (``cache_features: true``).

With ``finetune: fc`` the trunk is frozen, so its pooled features of a video do not
change from epoch to epoch. They are computed once per video (evaluation view: centre
clip, centre crop, no flip), and every epoch then trains the linear head on the cached
``(N, C)`` matrix: an epoch costs a few matrix products instead of a pass of the trunk.
The head trained this way is the model's ``fc``, so the saved model is an ordinary one.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from momentlens.analysis import metrics as M
from momentlens.data.layout import Split
from momentlens.engine import checkpoint as ckpt
from momentlens.engine.config import TrainConfig
from momentlens.engine.distributed import DistInfo, EpochSampler
from momentlens.engine.inference import Normalizer, make_loader
from momentlens.engine.runtime import autocast
from momentlens.models.spec import InputSpec
from momentlens.utils import progress, write_text_atomic


@torch.no_grad()
def pooled_features(model: nn.Module, dataset: Any, device: torch.device,
                    normalizer: Normalizer, amp: torch.dtype | None, batch_size: int,
                    workers: int, info: DistInfo, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(features (N, C), labels (N,))``: the trunk's globally pooled features per item."""
    model.eval()
    sampler = EpochSampler(len(dataset), batch_size, DistInfo(), shuffle=False)
    loader = make_loader(dataset, batch_size, workers, sampler, device)
    feats, labels = [], []
    for clips, y, _ in progress(loader, total=len(loader), desc=desc, unit="batch",
                                disable=None if info.is_main else True):
        with autocast(device, amp):
            f = model.forward_features(normalizer(clips.to(device)))
        feats.append(f.float().mean(dim=(2, 3, 4)).cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def train_head_on_cache(cfg: TrainConfig, model: nn.Module, spec: InputSpec, train_split: Split,
                        val_split: Split, device: torch.device, normalizer: Normalizer, amp: torch.dtype | None,
                        meta: dict[str, Any], run_dir: Path, info: DistInfo) -> dict[str, Any]:
    from momentlens.engine.train import LRSchedule, make_dataset, make_optimizer

    train_ds = make_dataset(cfg, spec, train_split, False, run_dir)
    val_ds = make_dataset(cfg, spec, val_split, False, run_dir)
    t0 = time.perf_counter()
    xtr, ytr = pooled_features(model, train_ds, device, normalizer, amp, cfg.batch_size,
                               cfg.workers, info, "cache features (training)")
    xva, yva = pooled_features(model, val_ds, device, normalizer, amp, cfg.batch_size,
                               cfg.workers, info, "cache features (validation)")
    cache_seconds = time.perf_counter() - t0
    head = model.classifier
    head.train()
    optimizer = make_optimizer(cfg, list(head.parameters()))
    steps_per_epoch = max(len(xtr) // cfg.batch_size, 1)
    schedule = LRSchedule(cfg, steps_per_epoch)
    g = torch.Generator().manual_seed(cfg.seed)
    history, best, step = [], -1.0, 0
    classes = train_split.classes
    for epoch in range(cfg.epochs):
        t_epoch = time.perf_counter()
        order = torch.randperm(len(xtr), generator=g)
        loss_sum = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            logits = head(xtr[idx].to(device))
            loss = F.cross_entropy(logits, ytr[idx].to(device),
                                   label_smoothing=cfg.label_smoothing)
            for group in optimizer.param_groups:
                group["lr"] = schedule.lr(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            loss_sum += float(loss)
        with torch.no_grad():
            probs = F.softmax(head(xva.to(device)), dim=1).cpu().numpy()
        summary = M.summarize(probs, yva.numpy(), classes)
        row = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / steps_per_epoch,
               "val_top1": summary["top1"], "val_top5": summary["top5"],
               "epoch_seconds": round(time.perf_counter() - t_epoch, 4),
               "cache_seconds": round(cache_seconds, 2)}
        history.append(row)
        schedule.observe(row["val_top1"])
        improved = row["val_top1"] > best
        best = max(best, row["val_top1"])
        if info.is_main:
            state = {"epoch": epoch + 1, "step": step, "batch_in_epoch": 0,
                     "best_top1": best, "best_epoch": epoch + 1, "history": json.dumps(history),
                     "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                     "rng": ckpt.rng_state(), "config": json.dumps(cfg.to_dict())}
            ckpt.save_checkpoint(run_dir, model, {**meta, "epoch": epoch + 1, "step": step},
                                 state, tags=("last", "best") if improved else ("last",))
            write_text_atomic(run_dir / "metrics.jsonl",
                              "".join(json.dumps(r) + "\n" for r in history))
            print(f"epoch {epoch + 1}/{cfg.epochs} (cached features)  loss "
                  f"{row['train_loss']:.4f}  val top-1 {100 * row['val_top1']:.1f}%  "
                  f"{row['epoch_seconds']:.3f} s", file=sys.stderr)
    return {**history[-1], "best_top1": best, "run_dir": str(run_dir),
            "cache_seconds": cache_seconds, "num_cached": int(len(xtr) + len(xva)),
            "feature_dim": int(xtr.shape[1]), "cached_mean_norm": float(np.mean(
                np.linalg.norm(xtr.numpy(), axis=1)))}
