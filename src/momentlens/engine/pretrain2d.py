"""Stand-in for the 2D model's ImageNet initialisation: pretrain the trunk on shape images.

The paper fine-tunes a 2D ResNet-50 that starts from ImageNet weights. Offline and on a
CPU we have none, and a 2D ResNet trained from scratch on the hard synthetic videos
learns little in the demo's budget. This step trains the same 2D trunk (same model,
width and strides as the recipe) to name the shape in single images of
:mod:`momentlens.data.shapes` (rendered in memory from their own seeds, with shape kinds
of their own), then saves its weights; the recipe's ``pretrained:`` loads them and
replaces the classifier. It is labelled as what it is everywhere it is used: a synthetic
stand-in, not ImageNet.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from momentlens.data.shapes import EXTRA_ONLY, PRETRAIN_SHAPES, shape_batch
from momentlens.utils import atomic_path, write_json_atomic

log = logging.getLogger(__name__)


def pretrain_2d(out: str | os.PathLike[str], model: str = "r2d18", width: float = 0.25,
                last_stride: int = 1, size: int = 64, steps: int = 600, batch: int = 64,
                lr: float = 2e-3, seed: int = 0, extra_only: bool = False,
                threads: int = 0, device: str = "cpu", frames: int = 1) -> dict:
    """Train ``model``'s trunk on ``steps`` batches of ``batch`` shape images of ``size``
    px (AdamW, 5% linear warm-up, cosine from ``lr``) and write its state dict to ``out`` (safetensors)
    plus ``out`` + ``.json`` (settings, seconds, last-100-step train accuracy).
    ``extra_only``: only shapes that no video class uses; ``threads``: torch threads (0:
    torch's default); ``device``: where to train. A 3D ``model`` (e.g. ``r3d10``) sees
    each image as a still clip of ``frames`` copies (as I3D's "boring videos").
    Returns the JSON record."""
    from safetensors.torch import save_file

    from momentlens.models.registry import create_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    kinds = EXTRA_ONLY if extra_only else PRETRAIN_SHAPES
    net = create_model(model, len(kinds), width=width, last_stride=last_stride, frames=frames,
                       size=size).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (
        1 + np.cos(np.pi * min(i, steps) / steps)))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    net.train()
    t0, hits = time.perf_counter(), []
    for step in range(steps):
        images, labels = shape_batch(step, batch, size, seed=seed, kinds=kinds)
        x = torch.from_numpy(images).permute(0, 3, 1, 2).unsqueeze(2).to(device)  # (B,3,1,H,W)
        x = x.expand(-1, -1, frames, -1, -1).contiguous() if frames > 1 else x
        y = torch.from_numpy(labels).to(device)
        logits = net(net.input_spec.normalize(x))
        loss = loss_fn(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        hits.append(float((logits.argmax(1) == y).float().mean()))
        if step % 100 == 0 or step == steps - 1:
            log.info("pretrain2d step %d/%d loss %.3f acc(100) %.3f", step + 1, steps,
                     float(loss.detach()), float(np.mean(hits[-100:])))
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    with atomic_path(out) as tmp:
        save_file(state, str(tmp))
    record = {"what": "2D trunk pretrained on synthetic shape images (a stand-in for "
                      "ImageNet initialisation, not ImageNet)",
              "model": model, "frames": frames, "width": width, "last_stride": last_stride, "size": size,
              "steps": steps, "batch": batch, "lr": lr, "seed": seed, "shapes": list(kinds),
              "train_acc_last100": round(float(np.mean(hits[-100:])), 4), "device": device,
              "seconds": round(time.perf_counter() - t0, 1)}
    write_json_atomic(Path(str(out) + ".json"), record)
    return record


def inflate_to_3d(pretrained_2d: str | os.PathLike[str], out: str | os.PathLike[str],
                  model: str = "r3d10", width: float = 0.25, last_stride: int = 1,
                  seed: int = 0) -> dict:
    """Initialise a 3D model from a :func:`pretrain_2d` file (I3D-style inflation) and
    write its full state dict to ``out`` (safetensors) for a recipe's ``pretrained``.

    Every 3D tensor whose key and 2D shape match the 2D file is taken from it, a 2D
    kernel ``(O, I, k, k)`` repeated over the 3D kernel's ``t`` steps and divided by
    ``t``; tensors without a match (a second block per stage in the 2D file, the 2D
    projection shortcuts, the classifier) keep their fresh initialisation (seeded by
    ``seed``). Returns ``{"inflated": n, "fresh": m}`` counts of tensors."""
    from safetensors.torch import load_file, save_file

    from momentlens.models.registry import create_model

    torch.manual_seed(seed)
    net = create_model(model, 2, width=width, last_stride=last_stride)
    own, src = net.state_dict(), load_file(str(pretrained_2d))
    inflated = 0
    for key, target in own.items():
        value = src.get(key)
        if value is None or key.startswith("fc."):
            continue
        if value.ndim == 4 and target.ndim == 5 and value.shape == target.shape[:2] + target.shape[3:]:
            t = target.shape[2]
            value = value.unsqueeze(2).repeat(1, 1, t, 1, 1) / t
        if value.shape != target.shape:
            continue
        own[key] = value.to(target.dtype)
        inflated += 1
    with atomic_path(out) as tmp:
        save_file({k: v.contiguous() for k, v in own.items()}, str(tmp))
    return {"inflated": inflated, "fresh": len(own) - inflated}


if __name__ == "__main__":  # python -m momentlens.engine.pretrain2d OUT [json overrides]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(pretrain_2d(sys.argv[1], **kw)))
