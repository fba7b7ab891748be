"""A second synthetic action dataset, written from scratch, to test the recipes on data
that `momentlens synth` did not make (issue 20).

Nothing here comes from `momentlens.data`: the shapes, motions, backgrounds, clutter,
drawing (PIL polygons at 4x, box-filtered down) and encoding (PyAV) are this file's own.
It writes the Moments-in-Time release layout that `momentlens` reads, with a
`boxes.json` for the CAM pointing game and a `synth_info.json` naming the class groups:

* appearance classes, named by the object's shape alone while it drifts and turns:
  ``star``, ``heart``, ``ell`` (an L), ``hourglass``;
* time-reversed pairs, the second of each rendered as the first and played backwards:
  ``fading_in`` / ``fading_out`` (a pentagon's opacity), ``squashing`` / ``stretching``
  (an ellipse flattening onto its base and widening), ``climbing`` / ``descending`` (a
  house shape going up a staircase path; the steps go left or right at random, so a
  horizontal flip never changes the class).

Every video draws its object colour (HSV, any hue), outline (dark or light), size,
position, drift, background (plasma, stripes, tiles or gradient with dots, panned by a
small camera motion), 0-4 clutter items of no class (half of them moving) and pixel
noise independently of its class. Frames where a fading object is below 30% opacity
get an empty box (the pointing game skips them).

    python benchmarks/independent_moments.py OUT [--seed 7] [--train 60 --val 20]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SIZE, FRAMES, FPS, SUPER = 128, 90, 30, 4
APPEARANCE = ["star", "heart", "ell", "hourglass"]
PAIRS = [("fading_in", "fading_out"), ("squashing", "stretching"), ("climbing", "descending")]
CLASSES = APPEARANCE + [c for p in PAIRS for c in p]


# ------------------------------------------------------------------------ shapes

def _outline(kind: str, aspect: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Unit-radius polygon ``(N, 2)`` of ``kind`` (x right, y down), centred on 0."""
    if kind == "star":
        a = np.arange(10) * np.pi / 5 - np.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(a), r * np.sin(a)], 1)
    if kind == "heart":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        x = 16 * np.sin(t) ** 3
        y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
        return np.stack([x, y + 2.5], 1) / 16.5
    if kind == "ell":
        return np.array([[-0.65, -1], [-0.1, -1], [-0.1, 0.45], [0.75, 0.45], [0.75, 1],
                         [-0.65, 1]])
    if kind == "hourglass":
        return np.array([[-0.8, -1], [0.8, -1], [0.14, 0], [0.8, 1], [-0.8, 1], [-0.14, 0]])
    if kind == "pentagon":
        a = np.arange(5) * 2 * np.pi / 5 - np.pi / 2
        return np.stack([np.cos(a), np.sin(a)], 1)
    if kind == "ellipse":
        t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
        return np.stack([aspect[0] * np.cos(t), aspect[1] * np.sin(t)], 1)
    if kind == "house":
        return np.array([[-0.75, 1], [0.75, 1], [0.75, -0.15], [0, -1], [-0.75, -0.15]])
    raise ValueError(kind)


def _mask(points: np.ndarray, grow: int = 0) -> np.ndarray:
    """Coverage ``(SIZE, SIZE)`` in [0, 1] of a polygon in pixel coordinates, drawn at
    ``SUPER`` x over its own bounding box and box-filtered down; ``grow`` > 0 dilates it
    by ``grow`` sub-pixels."""
    out = np.zeros((SIZE, SIZE), dtype=np.float32)
    margin = 2 + grow // SUPER + 1
    x0, y0 = np.maximum(np.floor(points.min(0)).astype(int) - margin, 0)
    x1, y1 = np.minimum(np.ceil(points.max(0)).astype(int) + margin, SIZE)
    if x1 <= x0 or y1 <= y0:
        return out
    img = Image.new("L", (int(x1 - x0) * SUPER, int(y1 - y0) * SUPER), 0)
    local = (points - [x0, y0]) * SUPER
    ImageDraw.Draw(img).polygon([tuple(p) for p in local.tolist()], fill=255)
    if grow:
        img = img.filter(ImageFilter.MaxFilter(2 * grow + 1))
    small = img.resize((int(x1 - x0), int(y1 - y0)), Image.BOX)
    out[y0:y1, x0:x1] = np.asarray(small, dtype=np.float32) / 255.0
    return out


def _place(kind: str, cx: float, cy: float, r: float, angle: float = 0.0,
           aspect: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    pts = _outline(kind, aspect) * r
    c, s = np.cos(angle), np.sin(angle)
    pts = pts @ np.array([[c, s], [-s, c]])
    return pts + [cx, cy]


# ------------------------------------------------------------------------ scene

def _hsv(h: float, s: float, v: float) -> np.ndarray:
    i, f = int(h * 6) % 6, h * 6 - int(h * 6)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _background(rng: np.random.Generator, side: int) -> np.ndarray:
    """A ``(side, side, 3)`` float image in [0, 1] of one of four kinds."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    kind = rng.integers(4)
    palette = np.array([_hsv(rng.random(), rng.uniform(0.2, 0.9), rng.uniform(0.3, 0.95))
                        for _ in range(4)])
    if kind == 0:  # plasma: a few low-frequency waves mixing the palette
        w = np.stack([np.sin(2 * np.pi * (rng.uniform(0.5, 3) * xx * np.cos(a)
                                          + rng.uniform(0.5, 3) * yy * np.sin(a)) + rng.random() * 6)
                      for a in rng.uniform(0, np.pi, 4)], -1)
        w = np.exp(2 * w) / np.exp(2 * w).sum(-1, keepdims=True)
        return w @ palette
    if kind == 1:  # stripes of two or three colours at any angle
        a, width = rng.uniform(0, np.pi), rng.uniform(0.04, 0.2)
        band = ((xx * np.cos(a) + yy * np.sin(a)) / width).astype(int) % rng.integers(2, 4)
        return palette[band]
    if kind == 2:  # overlapping tiles
        img = np.broadcast_to(palette[0], (side, side, 3)).copy()
        for _ in range(rng.integers(8, 20)):
            x0, y0 = rng.integers(0, side, 2)
            w, h = rng.integers(8, side // 2, 2)
            img[y0:y0 + h, x0:x0 + w] = _hsv(rng.random(), rng.uniform(0.2, 0.9),
                                            rng.uniform(0.3, 0.95))
        return img
    a = rng.uniform(0, 2 * np.pi)  # a gradient with dots
    g = (xx * np.cos(a) + yy * np.sin(a))
    g = (g - g.min()) / (np.ptp(g) + 1e-6)
    img = palette[0] * (1 - g[..., None]) + palette[1] * g[..., None]
    for _ in range(rng.integers(20, 60)):
        x, y, r = rng.uniform(0, side), rng.uniform(0, side), rng.uniform(1, 4)
        img[(xx * side - x) ** 2 + (yy * side - y) ** 2 < r * r] = palette[rng.integers(2, 4)]
    return img


def _clutter(rng: np.random.Generator) -> list[dict]:
    """Items of no class: thick line segments, small circles, rectangle frames."""
    items = []
    for _ in range(rng.integers(0, 5)):
        items.append({"kind": ["segment", "circle", "frame"][rng.integers(3)],
                      "x": rng.uniform(10, SIZE - 10), "y": rng.uniform(10, SIZE - 10),
                      "r": rng.uniform(4, 12), "a": rng.uniform(0, np.pi),
                      "v": rng.uniform(-0.4, 0.4, 2) * (rng.random() < 0.5),
                      "colour": _hsv(rng.random(), rng.uniform(0.3, 1), rng.uniform(0.3, 1))})
    return items


def _clutter_mask(item: dict, t: int) -> np.ndarray:
    x, y = item["x"] + item["v"][0] * t, item["y"] + item["v"][1] * t
    r, a = item["r"], item["a"]
    if item["kind"] == "segment":
        d = np.array([np.cos(a), np.sin(a)]) * r * 1.5
        n = np.array([-np.sin(a), np.cos(a)]) * 1.2
        pts = np.array([[x, y] - d - n, [x, y] + d - n, [x, y] + d + n, [x, y] - d + n])
        return _mask(pts)
    if item["kind"] == "circle":
        t_ = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        return _mask(np.stack([x + r * 0.6 * np.cos(t_), y + r * 0.6 * np.sin(t_)], 1))
    outer = np.array([[x - r, y - r], [x + r, y - r], [x + r, y + r], [x - r, y + r]])
    inner = np.array([[x - r + 2, y - r + 2], [x + r - 2, y - r + 2], [x + r - 2, y + r - 2],
                      [x - r + 2, y + r - 2]])
    return np.clip(_mask(outer) - _mask(inner), 0, 1)


# ------------------------------------------------------------------------ motions

def _track(cls: str, rng: np.random.Generator) -> list[dict]:
    """The object in each frame: polygon points and opacity, for the *forward* class of
    a pair (the caller reverses the frames for its twin)."""
    r = rng.uniform(11, 19)
    t = np.arange(FRAMES) / (FRAMES - 1)
    start, end = np.sort(rng.uniform(0.05, 0.95, 2))
    start, end = min(start, 0.3), max(end, 0.7)
    p = np.clip((t - start) / (end - start), 0, 1)  # the action's progress
    p = p * p * (3 - 2 * p)
    frames = []
    if cls in APPEARANCE:
        heading, speed = rng.uniform(0, 2 * np.pi), rng.uniform(0, 40)
        x0 = rng.uniform(r + 4 + speed / 2, SIZE - r - 4 - speed / 2, 2)
        a0, spin = rng.uniform(-0.45, 0.45), rng.uniform(-0.35, 0.35)
        for k in range(FRAMES):
            c = x0 + speed * (t[k] - 0.5) * np.array([np.cos(heading), np.sin(heading)])
            frames.append({"pts": _place(cls, c[0], c[1], r, a0 + spin * t[k]), "alpha": 1.0})
    elif cls == "fading_in":
        c0 = rng.uniform(r + 6, SIZE - r - 6, 2)
        drift = rng.uniform(-8, 8, 2)
        a0 = rng.uniform(0, 2 * np.pi)
        for k in range(FRAMES):
            frames.append({"pts": _place("pentagon", *(c0 + drift * t[k]), r, a0),
                           "alpha": float(p[k])})
    elif cls == "squashing":
        cx = rng.uniform(r * 1.8 + 4, SIZE - r * 1.8 - 4)
        base = rng.uniform(2 * r + 6, SIZE - 4)  # the ground the ellipse rests on
        flat = rng.uniform(0.3, 0.4)
        for k in range(FRAMES):
            h = 1 - (1 - flat) * p[k]
            w = 1 / np.sqrt(h)  # wider as it flattens (by less than area-keeping 1 / h)
            frames.append({"pts": _place("ellipse", cx, base - h * r, r, 0.0, (w * 0.8, h)),
                           "alpha": 1.0})
    elif cls == "climbing":
        steps = rng.integers(3, 6)
        rise, run = rng.uniform(40, 60), rng.uniform(20, 40) * rng.choice([-1, 1])
        x0 = rng.uniform(r + 4 + max(0, -run), SIZE - r - 4 - max(0, run))
        y0 = rng.uniform(r + 4 + rise, SIZE - r - 4)
        s = p * steps
        across = (np.floor(s) + np.clip((s - np.floor(s)) * 2, 0, 1)) / steps  # 1st half
        # of each step goes across, the second half up
        up = (np.floor(s) + np.clip((s - np.floor(s)) * 2 - 1, 0, 1)) / steps
        for k in range(FRAMES):
            frames.append({"pts": _place("house", x0 + run * across[k], y0 - rise * up[k], r),
                           "alpha": 1.0})
    else:
        raise ValueError(cls)
    return frames


# ------------------------------------------------------------------------ one video

def _render(job: tuple[str, str, int, int, str]) -> tuple[str, list[list[int]]]:
    """Render and encode one video; returns its key in boxes.json and its boxes."""
    import av

    split, cls, index, seed, root = job
    rng = np.random.default_rng([seed, CLASSES.index(cls), index, int(split == "training")])
    forward = {b: a for a, b in PAIRS}.get(cls, cls)
    track = _track(forward, rng)
    if forward != cls:
        track = track[::-1]
    pad = 12
    bg = _background(rng, SIZE + 2 * pad)
    shake = np.cumsum(rng.normal(0, 0.6, (FRAMES, 2)), 0)
    shake = np.clip(shake - shake.mean(0), -pad, pad).astype(int)
    clutter = _clutter(rng)
    colour = _hsv(rng.random(), rng.uniform(0.45, 1), rng.uniform(0.45, 1))
    edge = colour * 0.3 if rng.random() < 0.5 else 1 - (1 - colour) * 0.3
    noise = rng.uniform(0.01, 0.05)
    rel = f"{cls}/ind-{split[:3]}-{cls}-{index:04d}.mp4"
    path = Path(root) / split / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".part")
    boxes = []
    with av.open(str(tmp), "w", format="mp4") as box:
        stream = box.add_stream("libx264", rate=Fraction(FPS))
        stream.width = stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for k, obj in enumerate(track):
            dy, dx = shake[k] + pad
            img = bg[dy:dy + SIZE, dx:dx + SIZE].copy()
            for item in clutter:
                m = _clutter_mask(item, k)[..., None]
                img = img * (1 - m) + item["colour"] * m
            fill = _mask(obj["pts"])
            rim = np.clip(_mask(obj["pts"], grow=SUPER * 3 // 2) - fill, 0, 1)
            a = obj["alpha"]
            img = img * (1 - a * rim[..., None]) + edge * (a * rim[..., None])
            img = img * (1 - a * fill[..., None]) + colour * (a * fill[..., None])
            img = img + rng.normal(0, noise, img.shape)
            frame = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                box.mux(packet)
            ys, xs = np.nonzero(fill > 0.5)
            boxes.append([0, 0, 0, 0] if a < 0.3 or not len(xs) else
                         [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1])
        for packet in stream.encode():
            box.mux(packet)
    os.replace(tmp, path)
    return f"{split}/{rel}", boxes


def generate(out: Path, seed: int, train: int, val: int, workers: int = 2) -> None:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(split, cls, i, seed, str(out)) for split, n in (("training", train),
                                                               ("validation", val))
            for cls in CLASSES for i in range(n)]
    with ProcessPoolExecutor(workers) as pool:
        done = dict(pool.map(_render, jobs, chunksize=4))
    (out / "moments_categories.txt").write_text(
        "".join(f"{c},{i}\n" for i, c in enumerate(CLASSES)))
    for split, name in (("training", "trainingSet.csv"), ("validation", "validationSet.csv")):
        rows = [key.split("/", 1)[1] for key in done if key.startswith(split + "/")]
        (out / name).write_text("".join(f"{r},{r.split('/')[0]},3,0\n" for r in rows))
    (out / "boxes.json").write_text(json.dumps(
        {"format": "x0,y0,x1,y1 end-exclusive pixels", "width": SIZE, "height": SIZE,
         "videos": done}))
    (out / "synth_info.json").write_text(json.dumps({
        "generator": "benchmarks/independent_moments.py", "seed": seed,
        "appearance_classes": APPEARANCE, "time_reversed_pairs": [list(p) for p in PAIRS],
        "train_per_class": train, "val_per_class": val, "size": SIZE, "frames": FRAMES,
        "fps": FPS}, indent=2) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--train", type=int, default=60)
    p.add_argument("--val", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    generate(args.out, args.seed, args.train, args.val, args.workers)
    print(f"wrote {args.out}: {len(CLASSES)} classes, {args.train} + {args.val} videos each")
    return 0


if __name__ == "__main__":
    sys.exit(main())
