"""Stand-ins for the paper's pretrained initialisations: pretrain a trunk on shape images.

The paper fine-tunes a 2D ResNet-50 that starts from ImageNet weights and 3D ResNets
that start from Kinetics weights. Offline and on a CPU we have neither, and models
trained from scratch on the hard synthetic videos learn little in the demo's budget.
This step trains the recipe's own trunk (same model, width and strides) to name the
shape in single images of :mod:`momentlens.data.shapes` (rendered in memory from their
own seeds, with shape kinds of their own), then saves its weights; the recipe's
``pretrained:`` loads them and replaces the classifier. A 3D trunk sees each image as a
one-frame clip and is then inflated to clips (:func:`centre_taps`), as I3D inflated
ImageNet weights. It is labelled as what it is everywhere it is used: a synthetic
stand-in, not ImageNet and not Kinetics.
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
                last_stride: int = 1, size: int = 96, steps: int = 600, batch: int = 64,
                lr: float = 2e-3, seed: int = 0, extra_only: bool = False,
                threads: int = 0, device: str = "cpu", frames: int = 1,
                **options: object) -> dict:
    """Train ``model``'s trunk on ``steps`` batches of ``batch`` shape images of ``size``
    px (AdamW, 5% linear warm-up, cosine from ``lr``) and write its state dict to ``out`` (safetensors)
    plus ``out`` + ``.json`` (settings, seconds, last-100-step train accuracy).
    ``extra_only``: only shapes that no video class uses; ``threads``: torch threads (0:
    torch's default); ``device``: where to train. A 3D ``model`` (e.g. ``r3d10``) sees
    each image as a still clip of ``frames`` copies; with ``frames=1`` (as cheap as a 2D
    model) the saved kernels keep only their centre tap (:func:`centre_taps`), ready
    for clips of any length. ``options``: more of the model's builder options (a
    3D-ResNet's ``layer3_stride``, ``conv1_t_size``, ...; the fine-tuning recipe's, so the
    weights fit it). Returns the JSON record."""
    from momentlens.models.registry import create_model

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    kinds = EXTRA_ONLY if extra_only else PRETRAIN_SHAPES
    extra = {k: v for k, v in options.items() if v is not None}
    net = create_model(model, len(kinds), width=width, last_stride=last_stride, frames=frames,
                       size=size, **extra).to(device)
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
    inflated = _save(net, out, frames)
    record = {"what": ("3D trunk pretrained on one-frame clips of synthetic shape images "
                       "and inflated (a stand-in for Kinetics initialisation, not Kinetics)"
                       if inflated else "trunk pretrained on synthetic shape images (a "
                       "stand-in for ImageNet initialisation, not ImageNet)"),
              "model": model, "frames": frames, "width": width, "last_stride": last_stride,
              **extra, "size": size,
              "steps": steps, "batch": batch, "lr": lr, "seed": seed, "shapes": list(kinds),
              "train_acc_last100": round(float(np.mean(hits[-100:])), 4), "device": device,
              "seconds": round(time.perf_counter() - t0, 1),
              "inflation": "centre tap" if inflated else None}
    write_json_atomic(Path(str(out) + ".json"), record)
    return record


def _save(net: nn.Module, out: str | os.PathLike[str], frames: int) -> bool:
    """Write ``net``'s state dict to ``out`` (safetensors, atomically); a 3D trunk trained
    on one-frame clips is inflated first (:func:`centre_taps`). Returns whether it was."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    inflated = frames == 1 and any(v.ndim == 5 for v in state.values())
    if inflated:
        state = centre_taps(state)
    with atomic_path(out) as tmp:
        save_file(state, str(tmp))
    return inflated


def centre_taps(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A 3D trunk trained on single frames, made ready for clips (I3D-style inflation).

    Trained on one-frame clips, a 3D kernel ``(O, I, t, k, k)`` only ever used its centre
    tap ``t // 2`` (the others multiplied temporal zero padding and kept their random
    initialisation). Keeping the centre tap and zeroing the others makes the model apply
    the learned 2D filters to each frame on its own: on a clip of any length it starts as
    the image model it was, whatever padding or motion, and fine-tuning learns the
    temporal taps from zero. (Spreading the 2D kernel over all taps, the other I3D
    choice, blurs moving objects across the 7-frame stem and lost most of the shape
    knowledge on the synthetic videos: 0.21 against 0.89 zero-shot shape naming.)"""
    out = {}
    for key, value in state.items():
        if value.ndim == 5 and value.shape[2] > 1:
            centre = value.shape[2] // 2
            kept = torch.zeros_like(value)
            kept[:, :, centre] = value[:, :, centre]
            value = kept
        out[key] = value
    return out


if __name__ == "__main__":  # python -m momentlens.engine.pretrain2d OUT [json overrides]
    import sys

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    kw = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(pretrain_2d(sys.argv[1], **kw)))
