"""Drawing for the synthetic datasets: shapes, backgrounds, distractors, noise.

Everything here is class-free: it draws what it is told, with random draws from the
``rng`` it is given. Which shape and motion make a class lives in
:mod:`momentlens.data.synth`; :mod:`momentlens.data.shapes` reuses these functions for
single-frame shape images.

Units: images are float RGB arrays ``(H, W, 3)`` on ``[0, 1]``; positions and radii
are in pixels (continuous, pixel ``(i, j)`` covers ``[j, j+1) x [i, i+1)`` so its
centre is at ``(j + 0.5, i + 0.5)``); angles in radians. Shapes are drawn only inside
a window around them, so a small object costs little whatever the frame size.
"""

from __future__ import annotations

import colorsys

import numpy as np

# Shapes a class can use (all symmetric about the vertical axis, so a horizontal flip
# leaves their look unchanged), and extra shapes that belong to no class (for the 2D
# pretraining stand-in and as distractors).
CLASS_SHAPES = ("ring", "square", "triangle", "plus", "diamond", "hexagon", "container")
EXTRA_SHAPES = ("disc", "star", "pentagon", "cross", "arrow", "crescent", "bar", "heart")
DISTRACTOR_KINDS = ("disc", "ellipse", "line", "blob")
BACKGROUNDS = ("grey", "texture", "blocks", "noise")


# ----------------------------------------------------------------------------- shapes


def sdf(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Signed distance (pixels, negative inside) of ``shape`` of radius ``r`` at offsets
    ``(dx, dy)`` from its centre (arrays of any one shape; y grows downwards)."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "ring":
        return np.abs(np.hypot(dx, dy) - 0.72 * r) - 0.28 * r
    if shape == "square":
        return np.maximum(ax, ay) - 0.82 * r
    if shape == "triangle":  # apex down
        edge = np.maximum(0.866 * ax + 0.5 * dy, -dy) - 0.5 * r
        return np.maximum(edge, dy - 0.75 * r)
    if shape == "plus":
        arm = 0.32 * r
        return np.minimum(np.maximum(ax - arm, ay - r), np.maximum(ax - r, ay - arm))
    if shape == "diamond":
        return (ax + ay) / 1.2 - 0.85 * r
    if shape == "hexagon":  # flat top and bottom
        return np.maximum(0.866 * ax + 0.5 * ay, ay) - 0.85 * r
    return _extra_sdf(shape, dx, dy, ax, ay, r)


def _extra_sdf(shape: str, dx: np.ndarray, dy: np.ndarray, ax: np.ndarray, ay: np.ndarray,
               r: float) -> np.ndarray:
    if shape == "disc":
        return np.hypot(dx, dy) - 0.8 * r
    if shape == "star":  # five points, one up
        ang = np.arctan2(dx, -dy)
        rad = 0.55 * r + 0.4 * r * np.cos(5 * ang)
        return np.hypot(dx, dy) - rad
    if shape == "pentagon":  # point up
        ang = np.arctan2(dx, -dy)
        step = 2 * np.pi / 5  # face normals sit between the vertices
        normal = np.round((ang - step / 2) / step) * step + step / 2
        return np.hypot(dx, dy) * np.cos(ang - normal) - 0.68 * r
    if shape == "cross":  # an X
        u, v = (dx + dy) / 1.414, (dx - dy) / 1.414
        arm = 0.25 * r
        return np.minimum(np.maximum(np.abs(u) - arm, np.abs(v) - r),
                          np.maximum(np.abs(u) - r, np.abs(v) - arm))
    if shape == "arrow":  # pointing up: a head and a shaft
        head = np.maximum(np.maximum(0.894 * ax + 0.447 * dy, -dy - 0.8 * r), dy + 0.1 * r) - 0.2 * r
        shaft = np.maximum(ax - 0.22 * r, np.abs(dy - 0.45 * r) - 0.55 * r)
        return np.minimum(head, shaft)
    if shape == "crescent":  # opening downwards
        return np.maximum(np.hypot(dx, dy) - 0.85 * r, 0.65 * r - np.hypot(dx, dy - 0.4 * r))
    if shape == "bar":  # a wide horizontal bar
        return np.maximum(ax - 0.9 * r, ay - 0.3 * r)
    if shape == "heart":
        lobes = np.hypot(ax - 0.38 * r, dy + 0.25 * r) - 0.42 * r
        tip = np.maximum(0.707 * (ax + dy) - 0.5 * r, -dy - 0.3 * r)
        return np.minimum(lobes, tip)
    raise ValueError(f"unknown shape {shape!r}")


def box_extent(shape: str, r: float) -> tuple[float, float]:
    """Half width and half height (pixels) of the box of ``shape`` with radius ``r``."""
    if shape == "container":
        return 0.7 * r, r
    if shape == "diamond":
        return 1.02 * r, 1.02 * r
    if shape == "hexagon":
        return 0.98 * r, 0.85 * r
    if shape == "triangle":
        return 0.87 * r, 0.75 * r
    return r, r


def _window(img: np.ndarray, cx: float, cy: float, half: float):  # noqa: ANN202
    """Slices of ``img`` covering the square of half side ``half`` around ``(cx, cy)``
    plus two pixels, and the pixel-centre offsets ``(dx, dy)`` inside it."""
    h, w = img.shape[:2]
    x0, x1 = max(0, int(cx - half) - 2), min(w, int(cx + half) + 3)
    y0, y1 = max(0, int(cy - half) - 2), min(h, int(cy + half) + 3)
    if x0 >= x1 or y0 >= y1:
        return None
    dy, dx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    return (slice(y0, y1), slice(x0, x1)), dx + 0.5 - cx, dy + 0.5 - cy


def draw_shape(img: np.ndarray, shape: str, cx: float, cy: float, r: float,
               fill: np.ndarray, outline: np.ndarray, level: float = 0.0) -> None:
    """Draw ``shape`` (radius ``r`` px, centre ``(cx, cy)`` px) into ``img`` in place:
    ``fill`` colour inside, a ~1.5 px ``outline`` at its edge, anti-aliased. For
    ``container`` (a glass), ``level`` in ``[0, 1]`` is how full of ``fill`` it is."""
    win = _window(img, cx, cy, 1.1 * r + 2)
    if win is None:
        return
    sl, dx, dy = win
    sub = img[sl]
    if shape == "container":
        _draw_container(sub, dx, dy, r, level, fill, outline)
        return
    d = sdf(shape, dx, dy, r)
    edge = np.clip(0.5 - d, 0, 1)[..., None]
    ring = np.clip(1.5 - np.abs(d + 1.0), 0, 1)[..., None] * 0.8
    sub[:] = sub * (1 - edge) + fill * edge
    sub[:] = sub * (1 - ring) + outline * ring


def _draw_container(sub: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: float, level: float,
                    fill: np.ndarray, outline: np.ndarray) -> None:
    """A glass, ``2 r`` tall, open at the top and wider there (half width ``0.7 r``) than
    at its foot (``0.5 r``): no square, block or distractor has that outline. Liquid of
    colour ``fill`` reaches ``level`` of its height; the empty part is tinted towards
    ``outline`` (dark for a light liquid, light for a dark one), so the level always
    shows, whatever colour the video drew."""
    hh = r
    half_w = 0.6 * r - 0.1 * r * (dy / hh)  # 0.7 r at the top (dy = -r), 0.5 r at the foot
    side, foot, top = np.abs(dx) - half_w, dy - hh, -hh - dy
    outer = np.maximum(np.maximum(side, foot), top)
    open_top = top >= np.maximum(side, foot)  # the rim: no wall drawn there
    wall = (np.clip(1.0 - np.abs(outer + 1.0), 0, 1) * ~open_top)[..., None]  # ~2 px
    surface = hh - 2.0 - level * (2 * hh - 4.0)  # liquid top, measured as dy
    inner = outer + 2.0
    liquid = np.clip(np.minimum(dy - surface + 0.5, 0.5 - inner), 0, 1)[..., None]
    inside = np.clip(0.5 - outer, 0, 1)[..., None]
    sub[:] = sub * (1 - inside * 0.6) + outline * inside * 0.6
    sub[:] = sub * (1 - liquid) + fill * liquid
    sub[:] = sub * (1 - wall) + outline * wall


# ----------------------------------------------------------------------------- colours


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """One RGB colour ``(3,)`` float32 on ``[0, 1]`` from hue/saturation/value on [0, 1]."""
    return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype=np.float32)


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A colour of random hue, saturation in [0.3, 1] and value in [0.35, 1]."""
    return hsv(rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.35, 1.0))


def contrast_outline(fill: np.ndarray) -> np.ndarray:
    """A near-black or near-white outline, whichever stands out from ``fill``."""
    lum = float(fill @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    return np.full(3, 0.08 if lum > 0.45 else 0.95, dtype=np.float32)


# ----------------------------------------------------------------------------- backgrounds


def _upsample(coarse: np.ndarray, out: int) -> np.ndarray:
    """Bilinear upsampling of a ``(g, g, C)`` grid to ``(out, out, C)``."""
    g = coarse.shape[0]
    t = np.linspace(0, g - 1, out)
    i0 = np.floor(t).astype(int).clip(0, g - 2)
    f = (t - i0).astype(np.float32)
    rows = coarse[i0] * (1 - f)[:, None, None] + coarse[i0 + 1] * f[:, None, None]
    return rows[:, i0] * (1 - f)[None, :, None] + rows[:, i0 + 1] * f[None, :, None]


def background(kind: str, rng: np.random.Generator, big: int) -> np.ndarray:
    """A ``(big, big, 3)`` float32 background of ``kind`` (see :data:`BACKGROUNDS`):
    ``grey`` the old mostly-grey texture; ``texture`` coloured blobs and stripes;
    ``blocks`` colour rectangles; ``noise`` multi-scale colour noise."""
    if kind == "blocks":
        img = np.empty((big, big, 3), np.float32)
        img[:] = random_colour(rng)
        for _ in range(int(rng.integers(5, 13))):
            x0, y0 = rng.integers(-big // 4, big, size=2)
            w, h = rng.integers(big // 8, big // 2, size=2)
            img[max(0, y0):y0 + h, max(0, x0):x0 + w] = random_colour(rng)
        return img
    if kind == "noise":
        img = sum(_upsample(rng.random((g, g, 3)).astype(np.float32), big) * wt
                  for g, wt in ((4, 0.45), (12, 0.35), (32, 0.2)))
        return _stretch(img, rng)
    low = _upsample(rng.random((6, 6, 3)).astype(np.float32), big)
    angle, freq = rng.uniform(0, np.pi), rng.uniform(0.15, 0.5)
    gy, gx = np.mgrid[0:big, 0:big].astype(np.float32)
    stripes = 0.5 + 0.5 * np.sin(freq * (gx * np.cos(angle) + gy * np.sin(angle)))
    tex = 0.55 * low + 0.25 * stripes[..., None] + 0.2 * rng.random((big, big, 1), np.float32)
    if kind == "grey":
        tex = 0.25 * tex + 0.75 * tex.mean(axis=2, keepdims=True)
    elif kind == "texture":
        tint = random_colour(rng)
        tex = 0.6 * tex + 0.4 * tex.mean(axis=2, keepdims=True) * tint * 1.5
    else:
        raise ValueError(f"unknown background {kind!r}; choose from {', '.join(BACKGROUNDS)}")
    return _stretch(tex, rng)


def _stretch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    lo, hi = sorted(rng.uniform(0.1, 0.9, size=2))
    hi = max(hi, lo + 0.3)
    span = max(float(np.ptp(img)), 1e-6)
    return (lo + (hi - lo) * (img - img.min()) / span).astype(np.float32)


# ----------------------------------------------------------------------------- distractors


def distractor_plan(rng: np.random.Generator, count: int, size: int, n: int) -> list[dict]:
    """``count`` distractors (shapes of no class) for an ``n``-frame video of ``size`` px:
    kind, colour, radius (px), start centre (px), per-frame velocity (px/frame; half of
    them still), angle (ellipses and lines)."""
    plan = []
    for _ in range(count):
        moving = rng.random() < 0.5
        speed = rng.uniform(0.1, 0.35) * size / max(n, 1) if moving else 0.0
        heading = rng.uniform(0, 2 * np.pi)
        plan.append({
            "kind": DISTRACTOR_KINDS[int(rng.integers(len(DISTRACTOR_KINDS)))],
            "colour": random_colour(rng), "r": rng.uniform(0.04, 0.12) * size,
            "x": rng.uniform(0, size), "y": rng.uniform(0, size),
            "vx": speed * np.cos(heading), "vy": speed * np.sin(heading),
            "angle": rng.uniform(0, np.pi), "aspect": rng.uniform(0.3, 0.7),
        })
    return plan


def draw_distractor(img: np.ndarray, d: dict, t: int, ox: float = 0.0, oy: float = 0.0) -> None:
    """Draw distractor ``d`` (from :func:`distractor_plan`) at frame ``t``, shifted by
    ``(ox, oy)`` px, into ``img`` in place (flat colour, soft edge, no outline)."""
    cx, cy, r = d["x"] + d["vx"] * t + ox, d["y"] + d["vy"] * t + oy, d["r"]
    win = _window(img, cx, cy, 1.2 * r + 1)
    if win is None:
        return
    sl, dx, dy = win
    c, s = np.cos(d["angle"]), np.sin(d["angle"])
    u, v = c * dx + s * dy, -s * dx + c * dy
    if d["kind"] == "disc":
        dist = np.hypot(dx, dy) - r
    elif d["kind"] == "ellipse":
        dist = (np.hypot(u, v / d["aspect"]) - r) * d["aspect"]
    elif d["kind"] == "line":
        dist = np.maximum(np.abs(u) - 1.2 * r, np.abs(v) - 0.12 * r - 0.8)
    else:  # blob: two overlapping discs
        dist = np.minimum(np.hypot(u - 0.35 * r, v) - 0.6 * r, np.hypot(u + 0.35 * r, v) - 0.5 * r)
    alpha = np.clip(1.0 - dist / 1.5, 0, 1)[..., None]
    sub = img[sl]
    sub[:] = sub * (1 - alpha) + d["colour"] * alpha
