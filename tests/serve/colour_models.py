"""Hand-built models whose class is decided by the colour of the moving object, for the
serve and timeline tests: fully deterministic, no training. Test videos are synthetic
clips of a class (:func:`momentlens.data.synth.render_video`) tinted with that class's
colour (``ring`` red, ``triangle`` green, ``falling`` blue), so the chroma (a pixel
minus its grey level) names the class whatever the generator draws. ``colour2d`` keeps every frame's map (``T' = T``, segments sampler),
``colour3d`` pools over time (``T' = 1``, clip sampler), like the real 2D and 3D models.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from momentlens.data.encode import write_video
from momentlens.data.synth import render_video
from momentlens.engine.checkpoint import save_model_file
from momentlens.models.base import VideoClassifier
from momentlens.models.registry import _MODELS, register_model
from momentlens.models.spec import InputSpec

CLASSES = ["ring", "triangle", "falling"]
TINTS = {"ring": (230, 40, 40), "triangle": (40, 200, 40), "falling": (40, 60, 230)}
SIZE = 64  # synthetic videos are rendered at this size


class ColourNet(VideoClassifier):
    """Features: chroma pooled over 4 x 4 pixels (and, with ``pool_time``, all frames)."""

    def __init__(self, num_classes: int = 3, *, pool_time: bool = False) -> None:
        super().__init__()
        self.pool_time = pool_time
        self.conv_dims = 3 if pool_time else 2
        self.fc = nn.Linear(3, num_classes)
        with torch.no_grad():
            self.fc.weight.copy_(15.0 * (torch.eye(3) - 1 / 3)[:num_classes])
            self.fc.bias.zero_()
        self.input_spec = (InputSpec("clip", 8, 64, "none", stride=2, resize=64) if pool_time
                           else InputSpec("segments", 4, 64, "none", resize=64))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        chroma = x - x.mean(dim=1, keepdim=True)
        t = x.shape[2] if self.pool_time else 1
        return nn.functional.avg_pool3d(chroma, (t, 4, 4))


def colour2d(num_classes: int = 3) -> ColourNet:
    return ColourNet(num_classes, pool_time=False)


def colour3d(num_classes: int = 3) -> ColourNet:
    return ColourNet(num_classes, pool_time=True)


def register() -> None:
    """Add both builders to the model registry (once per process)."""
    for fn in (colour2d, colour3d):
        if fn.__name__ not in _MODELS:
            register_model(fn)


def write_run(folder: Path, name: str) -> Path:
    """``folder/model.safetensors`` of builder ``name``, loadable by ``momentlens.load``."""
    register()
    net = colour2d() if name == "colour2d" else colour3d()
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"model": name, "num_classes": len(CLASSES), "options": {}, "classes": CLASSES,
            "input": net.input_spec.to_dict()}
    save_model_file(folder / "model.safetensors", net, meta)
    return folder


def clip_frames(cls: str, seed: int, seconds: float, fps: int = 10) -> np.ndarray:
    """``seconds`` of a synthetic video of class ``cls`` tinted with its colour,
    uint8 (T, H, W, 3)."""
    frames, _ = render_video(cls, seed, size=SIZE, num_frames=round(seconds * fps), look="easy")
    tinted = 0.6 * frames + 0.4 * np.array(TINTS[cls], dtype=np.float64)
    return np.clip(tinted + 0.5, 0, 255).astype(np.uint8)


def write_clip(path: Path, cls: str, seed: int = 0, seconds: float = 2.0, fps: int = 10) -> Path:
    write_video(path, clip_frames(cls, seed, seconds, fps), fps=fps)
    return path
