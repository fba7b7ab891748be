"""Data pipeline speed on MiT-shaped videos (3 s, 30 fps, 340x256, H.264), per core.

Measures clips per second, one process, single-threaded decode, of:

* the decode floor: an independent minimal PyAV loop written here (no momentlens
  decoding code): open the file, and for each frame the sampler picks, seek to the last
  keyframe at or before it when that keyframe lies ahead of the decoder, decode forward
  to the frame and convert it (only it) to RGB at its own size; no transform;
* the pipeline: ``VideoDataset.__getitem__`` (open + decode + sample + transform to a
  112x112 crop + tensor), with PIL resampling (the default) and with the resize folded
  into FFmpeg's RGB conversion (``decoder_resize=True``);

for the 16-frame clip sampler (3D model) and the 4-frame segment sampler (2D model), on
the source videos and on a ``prepare``d 128-px copy. Floor and pipeline passes alternate
(noise on a shared machine hits both alike); each figure is the median over rounds.
Videos are generated on the fly in a temporary folder. Usage::

    python benchmarks/bench_data.py [--videos 16] [--reps 7] [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import tempfile
import time
from bisect import bisect_right
from pathlib import Path

import numpy as np

from momentlens.data.dataset import VideoDataset
from momentlens.data.decode import open_video
from momentlens.data.encode import write_video
from momentlens.data.layout import load_split
from momentlens.data.prepare import prepare_dataset
from momentlens.data.sampling import clip_indices, segment_indices

PIPELINES = {"clip16": ("clip", 16), "seg4": ("segments", 4)}
SEED = 0


def make_videos(root: Path, n: int, size=(256, 340), frames: int = 90) -> None:
    """``n`` textured moving-pattern videos in a class-folder layout (x264 defaults)."""
    rng = np.random.default_rng(0)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        base = rng.integers(0, 256, (-(-h // 8), -(-w // 8), 3), dtype=np.uint8)
        base = np.kron(base, np.ones((8, 8, 1), np.uint8))[:h, :w]
        clip = np.empty((frames, h, w, 3), np.uint8)
        for t in range(frames):
            shifted = np.roll(base, (t * 2, t * 3), axis=(0, 1))
            wave = (128 + 100 * np.sin((xx + 4 * t) / 13.0 + yy / 17.0)).astype(np.uint8)
            clip[t] = shifted // 2 + wave[..., None] // 2
        write_video(root / "training" / f"c{i % 4}" / f"v{i:03d}.mp4", clip, fps=30, crf=23,
                    preset="veryfast")


# ----------------------------------------------------------------------------- the floor


def floor_decode(path: str, wanted: list[int]) -> list[np.ndarray]:
    """RGB frames ``wanted`` (sorted, unique) of a constant-frame-rate, closed-GOP mp4,
    decoding only what must be decoded. Plain PyAV: keyframes from the container's index
    (read at open, free), frame ``i`` has pts ``start + i * step``."""
    import av

    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type, s.thread_count = "AUTO", 1
        step = round(1 / (float(s.average_rate) * float(s.time_base)))
        start = s.start_time or 0
        keys = [i for i, e in enumerate(s.index_entries) if e.is_keyframe]
        out, nxt, frames = [], 0, None
        for w in wanted:
            k = keys[bisect_right(keys, w) - 1]
            if frames is None or k > nxt:
                c.seek(start + k * step, stream=s, backward=True, any_frame=False)
                frames = c.decode(s)
            for f in frames:
                if round((f.pts - start) / step) == w:
                    out.append(f.to_ndarray(format="rgb24", threads=1))
                    break
            nxt = w + 1
        return out


def sampled_indices(records, sampler: str, frames: int) -> list[list[int]]:
    """The frames ``VideoDataset(train=True, seed=SEED)`` item ``i`` decodes in epoch 0."""
    out = []
    for i, rec in enumerate(records):
        rng = np.random.default_rng((SEED, 0, i))
        with open_video(rec.path, "pyav", threads=1) as r:
            n = r.num_frames
        idx = (clip_indices(n, frames, 1, True, rng) if sampler == "clip"
               else segment_indices(n, frames, True, rng))
        out.append(sorted({int(x) for x in idx}))
    return out


def check_floor(records, indices) -> None:
    """The floor must return the frames the project's reader returns (outside timing)."""
    for rec, idx in list(zip(records, indices))[:4]:
        with open_video(rec.path, "pyav", threads=1) as r:
            ref = r.get_frames(idx)
        got = np.stack(floor_decode(str(rec.path), idx))
        if not np.array_equal(got, ref):
            raise SystemExit(f"floor and reader disagree on {rec.path} frames {idx}")


# ----------------------------------------------------------------------------- timing


def _rates(fns, items, reps: int) -> list[float]:
    """Median clips per CPU-second of each function over ``reps`` rounds (process CPU
    time: the per-core cost, less sensitive than wall time to other processes on a
    shared machine); within a round the functions run one after another over all
    items (interleaved passes)."""
    for fn in fns:
        fn(items[0])  # warm up
    rates: list[list[float]] = [[] for _ in fns]
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t0 = time.process_time()
            for it in items:
                fn(it)
            rates[k].append(len(items) / (time.process_time() - t0))
    return [statistics.median(r) for r in rates]


def bench(root: Path, reps: int) -> dict:
    records = load_split(root, "training").records
    out = {}
    for name, (sampler, frames) in PIPELINES.items():
        kw = dict(sampler=sampler, frames=frames, train=True, size=112, backend="pyav",
                  seed=SEED, decode_threads=1)
        ds = VideoDataset(records, **kw)
        ds_fold = VideoDataset(records, decoder_resize=True, **kw)
        indices = sampled_indices(records, sampler, frames)
        check_floor(records, indices)
        paths = [str(r.path) for r in records]

        def floor(i: int, paths=paths, indices=indices) -> None:
            floor_decode(paths[i], indices[i])

        items = list(range(len(records)))
        f, p, q = _rates([floor, ds.__getitem__, ds_fold.__getitem__], items, reps)
        out[name] = {"floor": f, "pipeline": p, "fold": q}
    return out


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                     if line.startswith("Model name"))
    except Exception:
        model = platform.processor() or "unknown CPU"
    import av

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{model}, {os.cpu_count()} cores visible, Python {platform.python_version()}, "
            f"PyAV {av.__version__}; load average before the run {load}")


def report(results: dict, args, prep_s: float, src_desc: str, fast_desc: str) -> str:
    lines = [
        f"Machine: {machine()}. One process, single-threaded decode; median of "
        f"{args.reps} interleaved rounds over {args.videos} videos, process CPU time.",
        f"Source videos: H.264 (x264 veryfast, crf 23, default keyframe interval), {src_desc}. "
        f"Prepared copy: `prepare --short-side 128` ({fast_desc}, keyframe every 8 frames; "
        f"{prep_s / args.videos * 1000:.0f} ms per video to make on one core).",
        "",
        "| videos | sampler | floor (clips/s/core) | pipeline (clips/s/core) | pipeline / floor "
        "(target ≤ 1.2) | pipeline, `decoder_resize` | its cost / floor |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, res in results.items():
        for name, r in res.items():
            lines.append(f"| {kind} | {name} | {r['floor']:.1f} | {r['pipeline']:.1f} "
                         f"| {r['floor'] / r['pipeline']:.2f} | {r['fold']:.1f} "
                         f"| {r['floor'] / r['fold']:.2f} |")
    lines.append("")
    for name in PIPELINES:
        s = results["prepared"][name]["pipeline"] / results["source"][name]["pipeline"]
        fl = results["prepared"][name]["floor"] / results["source"][name]["floor"]
        lines.append(f"- {name}: the prepared copy loads {s:.2f}x faster than the source "
                     f"(target ≥ 4x; floor {fl:.2f}x).")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--markdown", default=None, help="write the results table here")
    args = ap.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        src, fast = Path(tmp) / "src", Path(tmp) / "fast"
        t0 = time.perf_counter()
        make_videos(src, args.videos)
        print(f"generated {args.videos} videos in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        prepare_dataset(src, fast, short_side=128, workers=1)
        prep_s = time.perf_counter() - t0
        with open_video(next(src.rglob("*.mp4"))) as r:
            src_desc = f"{r.size[1]}x{r.size[0]}, {r.num_frames} frames, {r.fps:g} fps"
        with open_video(next(fast.rglob("*.mp4"))) as r:
            fast_desc = f"{r.size[1]}x{r.size[0]}"
        results = {"source": bench(src, args.reps), "prepared": bench(fast, args.reps)}
    text = report(results, args, prep_s, src_desc, fast_desc)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
