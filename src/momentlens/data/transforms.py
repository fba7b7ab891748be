"""Spatial transforms: pure functions on uint8 clips.

Layout while transforming: a clip is a numpy ``uint8`` array ``(T, H, W, 3)`` (RGB,
``[0, 255]``), the layout decoders return. Every function returns a new clip in the
same layout and never opens files. :func:`to_tensor` turns the result into the model
layout, a torch ``uint8`` tensor ``(C, T, H, W)``; pixels stay ``uint8`` until they
reach the device, where :func:`momentlens.data.normalize.normalize` converts a batch
``(B, C, T, H, W)`` to float.

Resizing is bilinear with antialiasing (PIL). :class:`ClipTransform` composes the
steps; it resamples each frame *once*, straight from the source pixels into the
output crop (PIL's ``box`` argument), which equals "resize the short side, then
crop" without resizing pixels that are thrown away. :class:`CropGeometry` records
where the crop came from, so a map on the crop (a class activation map) can be put
back on the source pixel grid with :meth:`CropGeometry.uncrop`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# 3D-ResNets-PyTorch's multi-scale corner crop: scales 1, 2^-1/4, 2^-2/4, ... (5 of them)
# of the short side, at the centre or one of the four corners.
MULTISCALE_SCALES: tuple[float, ...] = tuple(2 ** (-i / 4) for i in range(5))
CORNER_POSITIONS: tuple[str, ...] = ("c", "tl", "tr", "bl", "br")


def _pil_resize(frame: np.ndarray, out_hw: tuple[int, int],
                box: tuple[float, float, float, float] | None = None) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(frame)
    # PIL boxes are (left, upper, right, lower) in source pixels.
    pil_box = None if box is None else (box[1], box[0], box[3], box[2])
    return np.asarray(img.resize((out_hw[1], out_hw[0]), Image.BILINEAR, box=pil_box))


def resized_crop(clip: np.ndarray, box: tuple[float, float, float, float],
                 out_hw: tuple[int, int]) -> np.ndarray:
    """Resample the source region ``box = (y0, x0, y1, x1)`` (pixel edges, floats) of every
    frame to ``out_hw`` (``(T, H, W, 3) -> (T, h, w, 3)``; a whole-pixel box of that size: copied)."""
    y0, x0, y1, x1 = (float(v) for v in box)
    if (all(v.is_integer() for v in (y0, x0, y1, x1)) and (y1 - y0, x1 - x0) == tuple(out_hw)
            and min(y0, x0) >= 0 and y1 <= clip.shape[1] and x1 <= clip.shape[2]):
        return clip[:, int(y0):int(y1), int(x0):int(x1)].copy()
    return np.stack([_pil_resize(f, out_hw, box) for f in clip])


def short_side_hw(src_hw: tuple[int, int], short: int) -> tuple[int, int]:
    """Output ``(H, W)`` after resizing the short side of ``src_hw`` to ``short`` pixels."""
    h, w = src_hw
    if h <= w:
        return short, max(1, round(w * short / h))
    return max(1, round(h * short / w)), short


def resize_short_side(clip: np.ndarray, short: int) -> np.ndarray:
    """Resize every frame so its short side is ``short`` pixels, keeping the aspect."""
    out_hw = short_side_hw(clip.shape[1:3], short)
    if out_hw == tuple(clip.shape[1:3]):
        return clip.copy()
    return np.stack([_pil_resize(f, out_hw) for f in clip])


def _need(clip: np.ndarray, size: int) -> None:
    if clip.shape[1] < size or clip.shape[2] < size:
        raise ValueError(f"clip {clip.shape[1]}x{clip.shape[2]} is smaller than the crop {size}")


def center_crop(clip: np.ndarray, size: int) -> np.ndarray:
    """The centre ``size x size`` square of every frame (rounding down to the top-left)."""
    _need(clip, size)
    y0, x0 = (clip.shape[1] - size) // 2, (clip.shape[2] - size) // 2
    return clip[:, y0:y0 + size, x0:x0 + size].copy()


def random_crop(clip: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size x size`` square at one uniformly random position, the same for all frames."""
    _need(clip, size)
    y0 = int(rng.integers(0, clip.shape[1] - size + 1))
    x0 = int(rng.integers(0, clip.shape[2] - size + 1))
    return clip[:, y0:y0 + size, x0:x0 + size].copy()


def corner_box(src_hw: tuple[int, int], scale: float, position: str
               ) -> tuple[float, float, float, float]:
    """Box ``(y0, x0, y1, x1)`` of a square of side ``int(scale * short side)`` at
    ``position`` (``c``, ``tl``, ``tr``, ``bl``, ``br``), as 3D-ResNets-PyTorch."""
    h, w = src_hw
    side = max(1, int(min(h, w) * scale))
    y0 = {"t": 0, "b": h - side}.get(position[0], (h - side) / 2)
    x0 = {"l": 0, "r": w - side}.get(position[-1], (w - side) / 2)
    if position == "c":
        y0, x0 = (h - side) / 2, (w - side) / 2
    elif position not in CORNER_POSITIONS:
        raise ValueError(f"position {position!r}; choose from {CORNER_POSITIONS}")
    return (y0, x0, y0 + side, x0 + side)


def multiscale_corner_crop(clip: np.ndarray, size: int, rng: np.random.Generator,
                           scales: Sequence[float] = MULTISCALE_SCALES,
                           positions: Sequence[str] = CORNER_POSITIONS) -> np.ndarray:
    """3D-ResNets-PyTorch's multi-scale corner crop: pick a scale and a position at
    random (once per clip), crop that square, resize it to ``size x size``."""
    scale = float(scales[int(rng.integers(len(scales)))])
    pos = positions[int(rng.integers(len(positions)))]
    return resized_crop(clip, corner_box(clip.shape[1:3], scale, pos), (size, size))


def hflip(clip: np.ndarray) -> np.ndarray:
    """Mirror every frame left-right (the whole clip, so motion stays consistent)."""
    if clip.ndim == 4 and clip.shape[3] == 3 and clip.dtype == np.uint8 and clip.flags.c_contiguous:
        return clip.view("V3")[:, :, ::-1].copy().view(np.uint8).reshape(clip.shape)  # 2x faster
    return clip[:, :, ::-1].copy()


# ----------------------------------------------------------------------------- colour
# Colour augmentations: every step is linear in RGB, so a clip's whole jitter is one 3x3
# matrix and an offset, applied once (no clamping between steps, unlike torchvision);
# one draw per clip, the same for all its frames.

_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R 601 luma weights
_RGB2YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                     [0.211, -0.523, 0.312]], dtype=np.float32)


def _apply_affine(clip: np.ndarray, m: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``clip @ m.T + offset`` on ``uint8 (T, H, W, 3)``, rounded and clipped to uint8."""
    out = clip.astype(np.float32) @ m.T.astype(np.float32) + offset.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def colour_jitter_matrix(brightness: float, contrast: float, saturation: float, hue: float,
                         mean_luma: float) -> tuple[np.ndarray, np.ndarray]:
    """The affine map ``(M (3, 3), offset (3,))`` on RGB pixels (units of ``[0, 255]``)
    of a brightness factor, a contrast factor about ``mean_luma`` (the clip's mean luma
    after the brightness step, ``[0, 255]``), a saturation factor and a hue rotation of
    ``hue`` turns (1.0 = the whole colour wheel, done in YIQ space). Factors of 1 and a
    hue of 0 give the identity."""
    eye = np.eye(3, dtype=np.float64)
    m = eye * brightness
    m = contrast * m
    offset = np.full(3, (1 - contrast) * mean_luma)
    grey = np.tile(_LUMA.astype(np.float64), (3, 1))  # rows: each output = luma
    sat = saturation * eye + (1 - saturation) * grey
    m, offset = sat @ m, sat @ offset
    a = 2 * np.pi * hue
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    yiq = _RGB2YIQ.astype(np.float64)
    h = np.linalg.inv(yiq) @ rot @ yiq
    return h @ m, h @ offset


def colour_jitter(clip: np.ndarray, rng: np.random.Generator, brightness: float = 0.4,
                  contrast: float = 0.4, saturation: float = 0.4, hue: float = 0.1
                  ) -> np.ndarray:
    """Random colour jitter of a ``uint8 (T, H, W, 3)`` clip, the same for all frames.

    Factors are drawn uniformly from ``[max(0, 1 - x), 1 + x]`` for ``x`` = brightness,
    contrast, saturation (as torchvision's ``ColorJitter``) and the hue rotation from
    ``[-hue, hue]`` turns (``hue`` <= 0.5). Returns a new ``uint8`` clip of the same shape.
    """
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    b, c, s = (float(rng.uniform(max(0.0, 1 - x), 1 + x)) for x in (brightness, contrast,
                                                                     saturation))
    h = float(rng.uniform(-hue, hue))
    mean_luma = float(clip.reshape(-1, 3).mean(axis=0) @ _LUMA) * b
    m, offset = colour_jitter_matrix(b, c, s, h, mean_luma)
    return _apply_affine(clip, m, offset)


def grayscale(clip: np.ndarray) -> np.ndarray:
    """Grey-scale (ITU-R 601 luma in all three channels) of a ``uint8 (T, H, W, 3)`` clip."""
    luma = clip.astype(np.float32) @ _LUMA
    return np.repeat(np.clip(luma + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=-1)


def random_grayscale(clip: np.ndarray, rng: np.random.Generator, p: float = 0.2) -> np.ndarray:
    """With probability ``p`` the :func:`grayscale` of the clip, else an unchanged copy."""
    return grayscale(clip) if rng.random() < p else clip.copy()


def colour_augment(clip: np.ndarray, rng: np.random.Generator, jitter: float = 0.0,
                   grayscale_p: float = 0.0) -> np.ndarray:
    """The training colour augmentation of :class:`~momentlens.data.dataset.VideoDataset`:
    :func:`colour_jitter` with brightness = contrast = saturation = ``jitter`` and hue
    ``min(0.5, jitter / 2)`` turns (skipped when ``jitter`` is 0), then
    :func:`random_grayscale` with ``grayscale_p`` (skipped when 0). No random draw is
    made for a skipped step, so ``jitter = grayscale_p = 0`` leaves ``rng`` untouched."""
    if jitter > 0:
        clip = colour_jitter(clip, rng, jitter, jitter, jitter, min(0.5, jitter / 2))
    if grayscale_p > 0:
        clip = random_grayscale(clip, rng, grayscale_p)
    return clip


def to_tensor(clip: np.ndarray) -> torch.Tensor:
    """``uint8 (T, H, W, 3)`` numpy -> torch ``uint8 (C, T, H, W)`` (contiguous)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).contiguous()


# ----------------------------------------------------------------------------- geometry


@dataclass(frozen=True)
class CropGeometry:
    """Where an eval crop came from.

    ``src_hw``: source frame ``(H, W)``; ``scale``: ``(sy, sx)`` = resized / source size
    (the short-side resize); ``crop_box``: ``(y0, x0, h, w)`` of the crop in resized
    pixels. Coordinates are continuous with pixel ``(i, j)`` covering
    ``[i, i+1) x [j, j+1)``.
    """

    src_hw: tuple[int, int]
    scale: tuple[float, float]
    crop_box: tuple[int, int, int, int]

    def source_box(self) -> tuple[float, float, float, float]:
        """The crop's ``(y0, x0, y1, x1)`` in source pixel edges."""
        y0, x0, h, w = self.crop_box
        sy, sx = self.scale
        return (y0 / sy, x0 / sx, (y0 + h) / sy, (x0 + w) / sx)

    def to_source(self, y: np.ndarray | float, x: np.ndarray | float
                  ) -> tuple[np.ndarray, np.ndarray]:
        """Crop pixel coordinates (continuous, 0 = top/left edge) -> source coordinates."""
        y0, x0, _, _ = self.crop_box
        sy, sx = self.scale
        return (np.asarray(y, dtype=np.float64) + y0) / sy, (np.asarray(x, dtype=np.float64) + x0) / sx

    def uncrop(self, heatmap: np.ndarray, fill: float = 0.0) -> np.ndarray:
        """A map ``(h', w')`` over the crop (any resolution, e.g. a 7x7 CAM) -> a
        ``float32 (H_src, W_src)`` map on the source grid, bilinearly interpolated at
        source pixel centres; source pixels outside the crop get ``fill``."""
        hm = np.asarray(heatmap, dtype=np.float64)
        if hm.ndim != 2:
            raise ValueError(f"heatmap must be 2-D (h, w), got shape {hm.shape}")
        y0, x0, h, w = self.crop_box
        sy, sx = self.scale
        # Source pixel centre -> crop coordinate -> heatmap cell coordinate.
        cy = ((np.arange(self.src_hw[0]) + 0.5) * sy - y0) / h
        cx = ((np.arange(self.src_hw[1]) + 0.5) * sx - x0) / w
        out = _interp(_interp(hm, cy * hm.shape[0] - 0.5, 0), cx * hm.shape[1] - 0.5, 1)
        inside = ((cy >= 0) & (cy < 1))[:, None] & ((cx >= 0) & (cx < 1))[None, :]
        return np.where(inside, out, fill).astype(np.float32)


def _interp(a: np.ndarray, coords: np.ndarray, axis: int) -> np.ndarray:
    n = a.shape[axis]
    c = np.clip(coords, 0, n - 1)
    i0 = np.clip(np.floor(c).astype(int), 0, max(n - 2, 0))
    t = c - i0 if n > 1 else np.zeros_like(c)
    i1 = np.minimum(i0 + 1, n - 1)
    a0, a1 = np.take(a, i0, axis=axis), np.take(a, i1, axis=axis)
    shape = [1, 1]
    shape[axis] = -1
    return a0 * (1 - t.reshape(shape)) + a1 * t.reshape(shape)


def eval_geometry(src_hw: tuple[int, int], resize_short: int, crop: int) -> CropGeometry:
    """Geometry of "resize the short side to ``resize_short``, centre-crop ``crop``"."""
    rh, rw = short_side_hw(src_hw, resize_short)
    if min(rh, rw) < crop:
        raise ValueError(f"resize {resize_short} is smaller than the crop {crop}")
    y0, x0 = (rh - crop) // 2, (rw - crop) // 2
    return CropGeometry(tuple(src_hw), (rh / src_hw[0], rw / src_hw[1]), (y0, x0, crop, crop))


# ----------------------------------------------------------------------------- composition

TRAIN_CROPS = ("random", "multiscale", "center")


@dataclass
class ClipTransform:
    """Spatial transform of a clip ``uint8 (T, H, W, 3)`` -> ``uint8 (T, size, size, 3)``.

    Evaluation: resize the short side to ``resize`` (default ``round(size * 128/112)``,
    i.e. 128 for the paper's 112 crop), centre crop ``size``. Training: ``crop``
    ``"random"`` (resize, then a random ``size`` square), ``"multiscale"`` (3D-ResNets'
    multi-scale corner crop of the source) or ``"center"`` (the paper: resize, centre
    crop), then a horizontal flip of the whole clip with probability ``flip_p``.
    """

    size: int = 112
    resize: int | None = None
    train: bool = False
    crop: str = "random"
    flip_p: float = 0.5

    def __post_init__(self) -> None:
        if self.resize is None:
            self.resize = round(self.size * 128 / 112)
        if self.resize < self.size:
            raise ValueError(f"resize ({self.resize}) must be at least size ({self.size})")
        if self.crop not in TRAIN_CROPS:
            raise ValueError(f"crop={self.crop!r}; choose from {TRAIN_CROPS}")

    def geometry(self, src_hw: tuple[int, int]) -> CropGeometry:
        """Crop geometry of the evaluation transform for a source of size ``src_hw``."""
        return eval_geometry(src_hw, int(self.resize), self.size)

    def __call__(self, clip: np.ndarray, rng: np.random.Generator | None = None,
                 src_hw: tuple[int, int] | None = None) -> np.ndarray:
        """``src_hw``: source size when the decoder resized the short side (not multiscale)."""
        src_hw = tuple(clip.shape[1:3]) if src_hw is None else tuple(src_hw)
        out_hw, pre = (self.size, self.size), src_hw != tuple(clip.shape[1:3])
        if not self.train:
            return resized_crop(clip, _box(self.geometry(src_hw), pre), out_hw)
        rng = rng if rng is not None else np.random.default_rng()
        if self.crop == "multiscale":
            out = multiscale_corner_crop(clip, self.size, rng)
        else:
            geo = self.geometry(src_hw)
            if self.crop == "random":
                rh, rw = round(src_hw[0] * geo.scale[0]), round(src_hw[1] * geo.scale[1])
                y0 = int(rng.integers(0, rh - self.size + 1))
                x0 = int(rng.integers(0, rw - self.size + 1))
                geo = CropGeometry(geo.src_hw, geo.scale, (y0, x0, self.size, self.size))
            out = resized_crop(clip, _box(geo, pre), out_hw)
        if self.flip_p > 0 and rng.random() < self.flip_p:
            out = hflip(out)
        return out


def _box(geo: CropGeometry, resized: bool) -> tuple[float, float, float, float]:
    """The crop's box in source pixels, or in resized pixels when ``resized``."""
    y0, x0, h, w = geo.crop_box
    return (y0, x0, y0 + h, x0 + w) if resized else geo.source_box()
