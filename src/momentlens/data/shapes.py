"""Single-frame shape images: the data of the 2D model's stand-in for ImageNet pretraining.

The paper's 2D ResNet-50 starts from ImageNet weights. Our CPU demo has no such weights,
so :mod:`momentlens.engine.pretrain2d` pretrains the 2D trunk on these images instead:
one shape per image, labelled by its kind, drawn with the same class-free look as the
hard synthetic videos (random colours, busy backgrounds, distractors, noise) but from
their own random draws (seeds in their own namespace, never a video's seed), and with
shape kinds of their own besides the video classes' shapes (:data:`PRETRAIN_SHAPES`).
No video is decoded: images are rendered in memory, a batch at a time.
"""

from __future__ import annotations

import numpy as np

from momentlens.data import synth_draw as D

PRETRAIN_SHAPES: tuple[str, ...] = D.CLASS_SHAPES + D.EXTRA_SHAPES
EXTRA_ONLY: tuple[str, ...] = D.EXTRA_SHAPES
_NAMESPACE = 271828  # first seed word: keeps these draws apart from every video's


def render_shape(kind: str, rng: np.random.Generator, size: int,
                 max_distractors: int = 4, noise: float = 0.04) -> np.ndarray:
    """One ``uint8 (size, size, 3)`` image of shape ``kind`` (radius 0.08-0.2 of the
    side, anywhere inside the frame, random colour) on a random background."""
    kind_bg = ("texture", "blocks", "noise")[int(rng.integers(3))]
    img = D.background(kind_bg, rng, size)
    for d in D.distractor_plan(rng, int(rng.integers(0, max_distractors + 1)), size, 1):
        D.draw_distractor(img, d, 0)
    r = rng.uniform(0.08, 0.2) * size
    hw, hh = D.box_extent(kind, r)
    cx = rng.uniform(hw + 1, size - hw - 1)
    cy = rng.uniform(hh + 1, size - hh - 1)
    fill = D.random_colour(rng)
    D.draw_shape(img, kind, cx, cy, r, fill, D.contrast_outline(fill), rng.uniform(0, 1))
    if rng.random() < 0.5:
        img = img[:, ::-1]
    sd = noise * rng.uniform(0.0, 1.0)
    if sd > 0:
        img = img + rng.normal(0.0, sd, size=(size, size, 1)).astype(np.float32)
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def shape_batch(step: int, batch: int, size: int, seed: int = 0,
                kinds: tuple[str, ...] = PRETRAIN_SHAPES) -> tuple[np.ndarray, np.ndarray]:
    """Batch ``step`` of the endless shape dataset: images ``uint8 (batch, size, size, 3)``
    and labels ``int64 (batch,)`` (indices into ``kinds``), a pure function of
    ``(seed, step)``."""
    rng = np.random.default_rng((_NAMESPACE, seed, step))
    labels = rng.integers(0, len(kinds), size=batch)
    images = np.stack([render_shape(kinds[k], rng, size) for k in labels])
    return images, labels.astype(np.int64)
