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

**Only shape and motion carry the class.** Every class draws its object's base size,
position, drift and (by default) colour from the same distributions; the background,
distractor shapes (discs, ellipses, lines and blobs, which are no class's shape, half of
them moving), pixel noise and a small camera jitter are drawn independently of the
class. The look is a :class:`Look` (presets in :data:`PRESETS`): ``hard`` (the default)
draws object colours at random per video on busy coloured backgrounds with distractors
and noise; ``easy`` is the old look, one hue per class on a grey texture, for a first
look only: a colour histogram names its appearance classes.

``boxes.json`` holds the object's box in every frame, for scoring class activation maps.

Layout written (matching the release)::

    OUT/moments_categories.txt        name,index        (one per line)
    OUT/trainingSet.csv               <class>/<file>.mp4,<class>,<agree>,<disagree>  (no header)
    OUT/validationSet.csv
    OUT/training/<class>/<file>.mp4   H.264, yuv420p, 30 fps, 90 frames
    OUT/validation/<class>/<file>.mp4
    OUT/boxes.json                    per-frame boxes (x0, y0, x1, y1), pixels, end-exclusive
    OUT/synth_info.json               class groups and all generator settings (written last)
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from momentlens.data import synth_draw as D
from momentlens.data.encode import write_video
from momentlens.data.synth_motion import BASE_RADIUS, camera_path, jitter_px, object_track
from momentlens.utils import MomentlensError, progress, write_json_atomic, write_text_atomic

# Class -> (shape, hue). The hue is used only by the ``colour="fixed"`` look (the easy
# preset); by default colours are drawn per video, whatever the class.
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
COLOURS = ("random", "fixed")
BACKGROUND_CHOICES = ("mixed", *D.BACKGROUNDS)


@dataclass(frozen=True)
class Look:
    """How a video looks, independently of its class.

    ``colour``: ``random`` (object colour drawn per video) or ``fixed`` (each class its
    own hue, +-0.03: a colour shortcut, kept for the easy preset). ``background``: one of
    :data:`BACKGROUND_CHOICES` (``mixed`` draws texture, blocks or noise per video).
    ``distractors``: at most this many shapes of no class per video (0..N, uniform).
    ``noise``: largest standard deviation of per-pixel Gaussian noise, on [0, 1] pixels
    (each video draws its own in ``[0.25, 1] * noise``).
    """

    colour: str = "random"
    background: str = "mixed"
    distractors: int = 4
    noise: float = 0.04

    def validate(self) -> Look:
        if self.colour not in COLOURS:
            raise MomentlensError(f"colour={self.colour!r}; choose from {', '.join(COLOURS)}")
        if self.background not in BACKGROUND_CHOICES:
            raise MomentlensError(f"background={self.background!r}; choose from "
                                  f"{', '.join(BACKGROUND_CHOICES)}")
        if not 0 <= self.distractors <= 32 or not 0 <= self.noise <= 0.5:
            raise MomentlensError("distractors must be in 0..32 and noise in [0, 0.5]")
        return self


PRESETS: dict[str, Look] = {
    "hard": Look(),
    "medium": Look(colour="random", background="mixed", distractors=1, noise=0.02),
    "easy": Look(colour="fixed", background="grey", distractors=0, noise=0.0),
}
DEFAULT_PRESET = "hard"


def make_look(preset: str = DEFAULT_PRESET, **overrides: object) -> Look:
    """The :class:`Look` of ``preset`` with any non-``None`` ``overrides`` applied
    (``colour``, ``background``, ``distractors``, ``noise``)."""
    if preset not in PRESETS:
        raise MomentlensError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    changes = {k: v for k, v in overrides.items() if v is not None}
    return dataclasses.replace(PRESETS[preset], **changes).validate()


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


# ----------------------------------------------------------------------------- rendering


def _colours(spec: ClassSpec, look: Look, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    """Fill and outline colours ``(3,)`` of the object."""
    if look.colour == "fixed":
        hue = spec.hue + rng.uniform(-0.03, 0.03)
        fill = D.hsv(hue, rng.uniform(0.75, 1.0), rng.uniform(0.8, 1.0))
        return fill, fill * 0.25
    fill = D.random_colour(rng)
    return fill, D.contrast_outline(fill)


def render_video(name: str, seed: Sequence[int] | int, size: int = 128, num_frames: int = 90,
                 look: Look | str = DEFAULT_PRESET) -> tuple[np.ndarray, np.ndarray]:
    """Render one video of class ``name`` with ``look`` (a :class:`Look` or preset name).

    Returns ``frames`` uint8 ``(T, H, W, 3)`` and ``boxes`` int32 ``(T, 4)`` as
    ``(x0, y0, x1, y1)`` pixels, end-exclusive and clipped to the frame. The reversed
    class of a pair renders the forward class with the same random draws and then reverses
    time, so ``render_video(rev, s)`` is ``render_video(fwd, s)`` played backwards.
    """
    spec = class_spec(name)
    look = make_look(look) if isinstance(look, str) else look.validate()
    rng = np.random.default_rng(seed)
    n, j = num_frames, jitter_px(size)
    kind = look.background
    if kind == "mixed":
        kind = ("texture", "blocks", "noise")[int(rng.integers(3))]
    bg = D.background(kind, rng, size + 2 * j + 2)
    cam = camera_path(rng, n, size)
    x, y, r, level = object_track(spec.shape, spec.motion, rng, n, size)
    fill, outline = _colours(spec, look, rng)
    plan = D.distractor_plan(rng, int(rng.integers(0, look.distractors + 1)), size, n)
    for d in plan:
        if d["vx"] == 0 and d["vy"] == 0:  # still ones belong to the scene: draw once
            D.draw_distractor(bg, d, 0, j + 1, j + 1)
    moving = [d for d in plan if d["vx"] or d["vy"]]
    sd = look.noise * rng.uniform(0.25, 1.0)
    frames = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.int32)
    for t in range(n):
        ox, oy = int(cam[t, 0]), int(cam[t, 1])
        img = bg[j + 1 + oy: j + 1 + oy + size, j + 1 + ox: j + 1 + ox + size].copy()
        for d in moving:
            D.draw_distractor(img, d, t, ox, oy)
        cx, cy = x[t] + ox, y[t] + oy
        D.draw_shape(img, spec.shape, cx, cy, r[t], fill, outline, level[t])
        if sd > 0:
            img += rng.normal(0.0, sd, size=(size, size, 1)).astype(np.float32)
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
        hw, hh = D.box_extent(spec.shape, r[t])
        boxes[t] = [
            max(0, int(np.floor(cx - hw))), max(0, int(np.floor(cy - hh))),
            min(size, int(np.ceil(cx + hw))), min(size, int(np.ceil(cy + hh))),
        ]
    if spec.reversed:
        frames, boxes = frames[::-1].copy(), boxes[::-1].copy()
    return frames, boxes


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
    look: Look


def _video_name(cls: str, split: str, index: int) -> str:
    tag = "trn" if split == "training" else "val"
    return f"{cls}/synth-{tag}-{cls.replace('+', '-')}-{index:04d}.mp4"


def _run_job(job: _Job) -> tuple[str, str, list[list[int]]]:
    frames, boxes = render_video(job.cls, job.seed, job.size, job.num_frames, job.look)
    write_video(Path(job.out) / job.split / job.rel, frames, fps=job.fps, crf=20, threads=1,
                preset="veryfast")
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
    preset: str = DEFAULT_PRESET,
    colour: str | None = None,
    background: str | None = None,
    distractors: int | None = None,
    noise: float | None = None,
) -> dict:
    """Write the synthetic dataset to ``out_dir`` and return a summary dict.

    ``preset`` (``hard``, ``medium``, ``easy``; see :data:`PRESETS`) sets the look;
    ``colour`` (``random``/``fixed``), ``background`` (:data:`BACKGROUND_CHOICES`),
    ``distractors`` (max per video) and ``noise`` (max pixel sd on [0, 1]) override it.
    Deterministic for a given ``seed`` and settings, whatever the number of workers:
    each video draws from its own seed ``(seed, split, class, index)``.
    """
    look = make_look(preset, colour=colour, background=background, distractors=distractors,
                     noise=noise)
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
             (seed, split_id, all_classes().index(cls), i), size, num_frames, fps, str(out),
             look)
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
    _write_lists(out, jobs, names, seed, size, boxes)
    summary = {**_settings(names, counts, jobs[0], seed, preset),
               "seconds": round(time.perf_counter() - t0, 1), "out_dir": str(out)}
    write_json_atomic(out / INFO_FILE, {k: v for k, v in summary.items() if k != "out_dir"})
    return summary


def _settings(names: list[str], counts: dict[str, int], job: _Job, seed: int, preset: str
              ) -> dict:
    """Class groups and every generator setting, for ``synth_info.json``."""
    pairs = [[f, r] for f, r in TIME_REVERSED_PAIRS if f in names and r in names]
    return {
        "classes": names,
        "appearance_classes": [c for c in names if c in APPEARANCE_CLASSES],
        "time_reversed_pairs": pairs,
        "videos": {s: counts[s] * len(names) for s in SPLITS},
        "size": job.size, "num_frames": job.num_frames, "fps": job.fps, "seed": seed,
        "preset": preset, "look": dataclasses.asdict(job.look),
        "geometry": {"base_radius": list(BASE_RADIUS), "camera_jitter_px": jitter_px(job.size),
                     "shared": "size, position, drift and colour draws do not depend "
                               "on the class"},
    }


def _write_lists(out: Path, jobs: list[_Job], names: list[str], seed: int, size: int,
                 boxes: dict[str, list[list[int]]]) -> None:
    """The release's split CSVs (with made-up agree/disagree votes), category list and
    ``boxes.json``."""
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
        f"  look: {summary.get('preset', '?')} ("
        + ", ".join(f"{k}={v}" for k, v in summary.get("look", {}).items()) + ")\n"
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
