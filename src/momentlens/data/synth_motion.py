"""Motion of the synthetic videos: camera jitter, the action's time course, object paths.

Class-free: :func:`object_track` is told a shape and a motion kind and draws everything
else (base size, position, drift) from distributions shared by all classes.
Units: pixels for positions and radii, frames for time.
"""

from __future__ import annotations

import numpy as np

from momentlens.data import synth_draw as D

BASE_RADIUS = (0.10, 0.17)  # every class's base object radius, in units of the frame side


def jitter_px(size: int) -> int:
    return max(1, round(3 * size / 128))


def camera_path(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(n, 2) integer offsets (dx, dy): a clipped random walk (hand-held camera)."""
    j = jitter_px(size)
    steps = rng.integers(-1, 2, size=(n, 2))
    return np.clip(np.cumsum(steps, axis=0), -j, j)


def action_progress(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) progress in [0, 1]: still, then the action with easing, then still.

    The start and end margins are drawn from the same range, so the time-reversed
    sequence has the same distribution: that keeps pairs indistinguishable frame by frame.
    """
    margin = max(1, n // 4)
    start = int(rng.integers(0, margin))
    end = n - 1 - int(rng.integers(0, margin))
    t = np.clip((np.arange(n) - start) / max(end - start, 1), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)  # smooth in and out


def _place(rng: np.random.Generator, travel: float, half: float, s: float) -> tuple[float, float]:
    """Start and end coordinate (px) of a path of signed length ``travel`` (shrunk if
    needed) for an object of half extent ``half``, kept inside ``[0, s]``."""
    room = max(s - 2 * half - 2, 0.0)
    travel = float(np.clip(travel, -room, room))
    lo = half + 1 + max(0.0, -travel)
    hi = s - half - 1 - max(0.0, travel)
    start = rng.uniform(lo, hi) if hi > lo else (lo + hi) / 2
    return start, start + travel


def object_track(shape: str, motion: str, rng: np.random.Generator, n: int, size: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centre x, y, radius (px) and fill level (0..1), each ``(n,)``.

    Every class draws its base radius from :data:`BASE_RADIUS` and a drift in a random
    direction; the class adds only its shape and its motion (descend, grow, fill).
    """
    s = float(size)
    p = action_progress(rng, n)
    r0 = rng.uniform(*BASE_RADIUS) * s
    heading = rng.uniform(0, 2 * np.pi)
    level = np.zeros(n)
    r = np.full(n, r0)
    if motion == "drift":
        drift, dy = rng.uniform(0.0, 0.45) * s, 0.0
    elif motion == "descend":
        drift, dy = rng.uniform(0.0, 0.08) * s, rng.uniform(0.35, 0.5) * s
    elif motion == "grow":
        drift, dy = rng.uniform(0.0, 0.12) * s, 0.0
        small, big = rng.uniform(0.5, 0.6), rng.uniform(1.35, 1.5)
        r = r0 * (small + (big - small) * p)
    elif motion == "fill":
        drift, dy = rng.uniform(0.0, 0.12) * s, 0.0
        r = np.full(n, 1.45 * r0)
        lo, hi = rng.uniform(0.02, 0.12), rng.uniform(0.88, 0.98)
        level = lo + (hi - lo) * p
    else:
        raise ValueError(motion)
    hw, hh = D.box_extent(shape, float(r.max()))
    x0, x1 = _place(rng, drift * np.cos(heading), hw, s)
    # A fall stays a fall: its drift only moves it sideways.
    y0, y1 = _place(rng, dy if dy else drift * np.sin(heading), hh, s)
    return x0 + (x1 - x0) * p, y0 + (y1 - y0) * p, r, level
