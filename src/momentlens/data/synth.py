"""A synthetic dataset in the exact on-disk layout of the Moments-in-Time (Mini) release.

Why synthetic: Moments-in-Time cannot be downloaded everywhere, and the paper's central
finding (a frame-averaging 2D model cannot tell actions that differ only in the
direction of time, a spatio-temporal 3D model can) needs classes built to test it.

Two kinds of class:

* **appearance classes** (``ring``, ``square``, ``triangle``, ``plus+sign``): a shape
  whose look alone names the class; it drifts in a random direction that carries no
  information. One frame suffices.
* **time-reversed pairs** (``falling``/``rising``, ``opening``/``closing``,
  ``filling``/``emptying``): the second class of a pair is rendered exactly as the first
  and then played backwards. The per-frame appearance distribution of the two classes is
  therefore identical and only the order of the frames differs, so an order-free model
  that averages frame scores is at chance inside a pair. All motions are vertical or
  radial, so a horizontal flip (a training augmentation) never changes the class.

Every video has a textured background drawn independently of its class and a small
camera jitter (a random walk applied to the whole picture), so that the object, not the
background, carries the class. ``boxes.json`` holds the object's box in every frame,
for scoring class activation maps.

Layout written (matching the release)::

    OUT/moments_categories.txt        name,index        (one per line)
    OUT/trainingSet.csv               <class>/<file>.mp4,<class>,<agree>,<disagree>  (no header)
    OUT/validationSet.csv
    OUT/training/<class>/<file>.mp4   H.264, yuv420p, 30 fps, 90 frames
    OUT/validation/<class>/<file>.mp4
    OUT/boxes.json                    per-frame boxes (x0, y0, x1, y1), pixels, end-exclusive
    OUT/synth_info.json               class groups and generation settings (written last)
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentlens.data.encode import write_video
from momentlens.utils import MomentlensError, progress, write_json_atomic, write_text_atomic

# Class -> (shape, hue). The hue is jittered per video; backgrounds are desaturated so the
# object stands out. Both classes of a time-reversed pair share shape and hue.
APPEARANCE_CLASSES: dict[str, tuple[str, float]] = {
    "ring": ("ring", 0.00),
    "square": ("square", 0.14),
    "triangle": ("triangle", 0.33),
    "plus+sign": ("plus", 0.50),
}
# (forward class, reversed class) -> (shape, hue, motion)
TIME_REVERSED_PAIRS: dict[tuple[str, str], tuple[str, float, str]] = {
    ("falling", "rising"): ("diamond", 0.62, "descend"),
    ("opening", "closing"): ("hexagon", 0.76, "grow"),
    ("filling", "emptying"): ("container", 0.90, "fill"),
}
SPLITS = {"training": "trainingSet.csv", "validation": "validationSet.csv"}
CATEGORIES_FILE = "moments_categories.txt"
INFO_FILE = "synth_info.json"
BOXES_FILE = "boxes.json"


def all_classes() -> list[str]:
    """Class names in output-index order: appearance classes, then each pair in turn."""
    names = list(APPEARANCE_CLASSES)
    for fwd, rev in TIME_REVERSED_PAIRS:
        names += [fwd, rev]
    return names


@dataclass(frozen=True)
class ClassSpec:
    name: str
    shape: str
    hue: float
    motion: str  # "drift" for appearance classes, else the forward motion of the pair
    reversed: bool


def class_spec(name: str) -> ClassSpec:
    if name in APPEARANCE_CLASSES:
        shape, hue = APPEARANCE_CLASSES[name]
        return ClassSpec(name, shape, hue, "drift", False)
    for (fwd, rev), (shape, hue, motion) in TIME_REVERSED_PAIRS.items():
        if name in (fwd, rev):
            return ClassSpec(name, shape, hue, motion, name == rev)
    raise MomentlensError(f"unknown synthetic class {name!r}; choose from {', '.join(all_classes())}")


# ----------------------------------------------------------------------------- shapes
# Signed distance functions on pixel offsets (dx, dy) from the object's centre, for an
# object of radius r; negative inside. Every shape is symmetric about the vertical axis,
# so a horizontal flip leaves its look unchanged.


def _sdf(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == "ring":
        return np.abs(np.hypot(dx, dy) - 0.72 * r) - 0.28 * r
    if shape == "square":
        return np.maximum(ax, ay) - 0.82 * r
    if shape == "triangle":  # apex down (image y grows downwards)
        edge = np.maximum(0.866 * ax + 0.5 * dy, -dy) - 0.5 * r
        return np.maximum(edge, dy - 0.75 * r)
    if shape == "plus":
        arm = 0.32 * r
        return np.minimum(np.maximum(ax - arm, ay - r), np.maximum(ax - r, ay - arm))
    if shape == "diamond":
        return (ax + ay) / 1.2 - 0.85 * r
    if shape == "hexagon":  # flat top and bottom
        return np.maximum(0.866 * ax + 0.5 * ay, ay) - 0.85 * r
    raise ValueError(shape)


def _box_extent(shape: str, r: float) -> tuple[float, float]:
    """Half width and half height of the shape's box, for radius r."""
    if shape == "container":
        return 0.6 * r, r
    if shape == "diamond":
        return 1.02 * r, 1.02 * r
    if shape == "hexagon":
        return 0.98 * r, 0.85 * r
    if shape == "triangle":
        return 0.87 * r, 0.75 * r
    return r, r


# ----------------------------------------------------------------------------- rendering


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A textured, desaturated background (float RGB in [0, 1]), larger than the frame."""
    big = size + 2 * _jitter_px(size) + 2
    # Low-frequency blobs: bilinear upsampling of a coarse random grid.
    coarse = rng.random((6, 6, 3))
    yy = np.linspace(0, 5, big)
    y0 = np.floor(yy).astype(int).clip(0, 4)
    fy = (yy - y0)[:, None, None]
    rows = coarse[y0] * (1 - fy) + coarse[y0 + 1] * fy  # (big, 6, 3)
    fx = (yy - y0)[None, :, None]
    low = rows[:, y0] * (1 - fx) + rows[:, y0 + 1] * fx
    # Stripes at a random angle and fine noise give texture that moves with the camera.
    angle = rng.uniform(0, np.pi)
    freq = rng.uniform(0.15, 0.5)
    gy, gx = np.mgrid[0:big, 0:big]
    stripes = 0.5 + 0.5 * np.sin(freq * (gx * np.cos(angle) + gy * np.sin(angle)))
    tex = 0.55 * low + 0.25 * stripes[..., None] + 0.2 * rng.random((big, big, 1))
    grey = tex.mean(axis=2, keepdims=True)
    bg = 0.25 * tex + 0.75 * grey  # mostly grey: colour belongs to the object
    lo, hi = sorted(rng.uniform(0.15, 0.85, size=2))
    hi = max(hi, lo + 0.25)
    return lo + (hi - lo) * (bg - bg.min()) / max(float(np.ptp(bg)), 1e-6)


def _jitter_px(size: int) -> int:
    return max(1, round(3 * size / 128))


def _camera_path(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """(n, 2) integer offsets (dx, dy): a clipped random walk (hand-held camera)."""
    j = _jitter_px(size)
    steps = rng.integers(-1, 2, size=(n, 2))
    return np.clip(np.cumsum(steps, axis=0), -j, j)


def _action_progress(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n,) progress in [0, 1]: still, then the action with easing, then still.

    The start and end margins are drawn from the same range, so the time-reversed
    sequence has the same distribution: that keeps pairs indistinguishable frame by frame.
    """
    margin = max(1, n // 4)
    start = int(rng.integers(0, margin))
    end = n - 1 - int(rng.integers(0, margin))
    t = np.clip((np.arange(n) - start) / max(end - start, 1), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)  # smooth in and out


def _object_track(
    spec: ClassSpec, rng: np.random.Generator, n: int, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centre x, y, radius and (for containers) fill level, in pixels."""
    s = float(size)
    p = _action_progress(rng, n)
    if spec.motion == "drift":
        r = np.full(n, rng.uniform(0.12, 0.16) * s)
        angle = rng.uniform(0, 2 * np.pi)
        dist = rng.uniform(0.0, 0.3) * s
        x0, y0 = rng.uniform(0.35, 0.65, size=2) * s
        x = x0 + (p - 0.5) * dist * np.cos(angle)
        y = y0 + (p - 0.5) * dist * np.sin(angle)
        level = np.zeros(n)
    elif spec.motion == "descend":
        r = np.full(n, rng.uniform(0.10, 0.13) * s)
        x = np.full(n, rng.uniform(0.3, 0.7) * s) + rng.uniform(-0.05, 0.05) * s * p
        top, bottom = rng.uniform(0.17, 0.27) * s, rng.uniform(0.73, 0.83) * s
        y = top + (bottom - top) * p
        level = np.zeros(n)
    elif spec.motion == "grow":
        small, big = rng.uniform(0.07, 0.09) * s, rng.uniform(0.19, 0.23) * s
        r = small + (big - small) * p
        x = np.full(n, rng.uniform(0.35, 0.65) * s)
        y = np.full(n, rng.uniform(0.35, 0.65) * s)
        level = np.zeros(n)
    elif spec.motion == "fill":
        r = np.full(n, rng.uniform(0.22, 0.27) * s)
        x = np.full(n, rng.uniform(0.3, 0.7) * s)
        y = np.full(n, rng.uniform(0.35, 0.65) * s)
        lo, hi = rng.uniform(0.02, 0.12), rng.uniform(0.88, 0.98)
        level = lo + (hi - lo) * p
    else:
        raise ValueError(spec.motion)
    return x, y, r, level


def render_video(name: str, seed: Sequence[int] | int, size: int = 128, num_frames: int = 90
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Render one video of class ``name``.

    Returns ``frames`` uint8 ``(T, H, W, 3)`` and ``boxes`` int32 ``(T, 4)`` as
    ``(x0, y0, x1, y1)`` pixels, end-exclusive and clipped to the frame. The reversed
    class of a pair renders the forward class with the same random draws and then reverses
    time, so ``render_video(rev, s)`` is ``render_video(fwd, s)`` played backwards.
    """
    spec = class_spec(name)
    rng = np.random.default_rng(seed)
    n = num_frames
    bg = _background(rng, size)
    cam = _camera_path(rng, n, size)
    x, y, r, level = _object_track(spec, rng, n, size)
    hue = (spec.hue + rng.uniform(-0.03, 0.03)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0)))
    outline = colour * 0.25
    j = _jitter_px(size)
    gy, gx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.int32)
    for t in range(n):
        ox, oy = int(cam[t, 0]), int(cam[t, 1])
        img = bg[j + 1 + oy: j + 1 + oy + size, j + 1 + ox: j + 1 + ox + size].copy()
        cx, cy = x[t] + ox, y[t] + oy
        dx, dy = gx - cx, gy - cy
        if spec.shape == "container":
            _draw_container(img, dx, dy, r[t], level[t], colour, outline)
        else:
            d = _sdf(spec.shape, dx, dy, r[t])
            edge = np.clip(0.5 - d, 0, 1)[..., None]  # one-pixel anti-aliased edge
            ring = np.clip(1.5 - np.abs(d + 1.0), 0, 1)[..., None]
            img = img * (1 - edge) + colour * edge
            img = img * (1 - ring * 0.8) + outline * ring * 0.8
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        hw, hh = _box_extent(spec.shape, r[t])
        boxes[t] = [
            max(0, int(np.floor(cx - hw))), max(0, int(np.floor(cy - hh))),
            min(size, int(np.ceil(cx + hw))), min(size, int(np.ceil(cy + hh))),
        ]
    if spec.reversed:
        frames, boxes = frames[::-1].copy(), boxes[::-1].copy()
    return frames, boxes


def _draw_container(img: np.ndarray, dx: np.ndarray, dy: np.ndarray, r: float, level: float,
                    colour: np.ndarray, outline: np.ndarray) -> None:
    """A glass of half size (0.6 r, r) whose liquid reaches ``level`` (0..1) of its height."""
    hw, hh = 0.6 * r, r
    outer = np.maximum(np.abs(dx) - hw, np.abs(dy) - hh)
    wall = np.clip(1.0 - np.abs(outer + 1.0), 0, 1)[..., None]  # ~2 px wall
    surface = hh - 2.0 - level * (2 * hh - 4.0)  # liquid top, measured as dy
    liquid = np.clip(np.minimum(dy - surface + 0.5, 0.5 - (outer + 2.0)), 0, 1)[..., None]
    inside = np.clip(0.5 - outer, 0, 1)[..., None]
    glass = np.full(3, 0.92)
    img *= 1 - inside * 0.6
    img += glass * inside * 0.6
    img[:] = img * (1 - liquid) + colour * liquid
    img[:] = img * (1 - wall) + outline * wall


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class _Job:
    split: str
    cls: str
    index: int
    rel: str  # "<class>/<file>.mp4"
    seed: tuple[int, ...]
    size: int
    num_frames: int
    fps: int
    out: str


def _video_name(cls: str, split: str, index: int) -> str:
    tag = "trn" if split == "training" else "val"
    return f"{cls}/synth-{tag}-{cls.replace('+', '-')}-{index:04d}.mp4"


def _run_job(job: _Job) -> tuple[str, str, list[list[int]]]:
    frames, boxes = render_video(job.cls, job.seed, job.size, job.num_frames)
    write_video(Path(job.out) / job.split / job.rel, frames, fps=job.fps, crf=20, threads=1)
    return job.split, job.rel, boxes.tolist()


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise MomentlensError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise MomentlensError(f"{out} is not empty; pass --overwrite to replace the dataset there")
        # Remove only what this generator writes; anything else the user keeps there stays.
        for name in [*SPLITS, *SPLITS.values(), CATEGORIES_FILE, BOXES_FILE, INFO_FILE]:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def is_complete(out_dir: str | os.PathLike[str]) -> bool:
    """True when ``out_dir`` holds a finished dataset (its info file is written last)."""
    return (Path(out_dir) / INFO_FILE).is_file()


def generate(
    out_dir: str | os.PathLike[str],
    train_per_class: int = 60,
    val_per_class: int = 20,
    size: int = 128,
    num_frames: int = 90,
    fps: int = 30,
    seed: int = 0,
    workers: int = 0,
    classes: Sequence[str] | None = None,
    overwrite: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the synthetic dataset to ``out_dir`` and return a summary dict.

    Deterministic for a given ``seed`` and settings, whatever the number of workers:
    each video draws from its own seed ``(seed, split, class, index)``.
    """
    if size < 16 or size % 2:
        raise MomentlensError(f"--size must be an even number of at least 16, got {size}")
    if num_frames < 1 or train_per_class < 1 or val_per_class < 1:
        raise MomentlensError("--frames, --train-per-class and --val-per-class must be positive")
    names = list(classes) if classes else all_classes()
    for name in names:
        class_spec(name)  # validates
    out = Path(out_dir)
    _prepare_out_dir(out, overwrite)
    counts = {"training": train_per_class, "validation": val_per_class}
    jobs = [
        _Job(split, cls, i, _video_name(cls, split, i),
             (seed, split_id, all_classes().index(cls), i), size, num_frames, fps, str(out))
        for split_id, split in enumerate(SPLITS)
        for cls in names
        for i in range(counts[split])
    ]
    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    boxes: dict[str, list[list[int]]] = {}
    if workers == 1:
        results = map(_run_job, jobs)
        _collect(results, jobs, boxes, on_progress)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            _collect(pool.map(_run_job, jobs, chunksize=4), jobs, boxes, on_progress)
    rng = np.random.default_rng([seed, 99])
    for split, csv_name in SPLITS.items():
        rows = []
        for job in jobs:
            if job.split == split:
                agree = int(rng.integers(2, 5))
                rows.append(f"{job.rel},{job.cls},{agree},{int(rng.integers(0, 2))}\n")
        write_text_atomic(out / csv_name, "".join(rows))
    write_text_atomic(out / CATEGORIES_FILE, "".join(f"{c},{i}\n" for i, c in enumerate(names)))
    write_json_atomic(out / BOXES_FILE, {
        "format": "per video, one [x0, y0, x1, y1] box per frame in pixels, end-exclusive",
        "width": size, "height": size,
        "videos": {k: boxes[k] for k in sorted(boxes)},
    }, indent=None)
    pairs = [[f, r] for f, r in TIME_REVERSED_PAIRS if f in names and r in names]
    summary = {
        "classes": names,
        "appearance_classes": [c for c in names if c in APPEARANCE_CLASSES],
        "time_reversed_pairs": pairs,
        "videos": {s: counts[s] * len(names) for s in SPLITS},
        "size": size, "num_frames": num_frames, "fps": fps, "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
        "out_dir": str(out),
    }
    write_json_atomic(out / INFO_FILE, {k: v for k, v in summary.items() if k != "out_dir"})
    return summary


def _collect(results, jobs: list[_Job], boxes: dict, on_progress) -> None:  # noqa: ANN001
    for done, (split, rel, bx) in enumerate(
        progress(results, total=len(jobs), desc="synth", unit="video"), start=1
    ):
        boxes[f"{split}/{rel}"] = bx
        if on_progress:
            on_progress(done, len(jobs))


def describe(summary: dict) -> str:
    """A few lines saying what ``generate`` made."""
    pairs = ", ".join(f"{a}/{b}" for a, b in summary["time_reversed_pairs"])
    v = summary["videos"]
    return (
        f"wrote {v['training']} training and {v['validation']} validation videos "
        f"({len(summary['classes'])} classes, {summary['size']}x{summary['size']}, "
        f"{summary['num_frames']} frames at {summary['fps']} fps) to {summary['out_dir']} "
        f"in {summary['seconds']:.1f} s\n"
        f"  appearance classes:  {', '.join(summary['appearance_classes'])}\n"
        f"  time-reversed pairs: {pairs}\n"
        f"  files: {CATEGORIES_FILE}, trainingSet.csv, validationSet.csv, {BOXES_FILE}, "
        f"{INFO_FILE}"
    )


def load_info(out_dir: str | os.PathLike[str]) -> dict:
    """Read ``synth_info.json`` (class groups) of a generated dataset."""
    path = Path(out_dir) / INFO_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise MomentlensError(f"{path} not found: not a (complete) synthetic dataset") from None
