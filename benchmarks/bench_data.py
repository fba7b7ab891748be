"""Data pipeline speed on MiT-shaped videos (3 s, 30 fps, ~256 px, H.264).

Measures, on one core (one process, single-threaded decode), clips per second of:

* the decode floor: ``open_video`` + ``get_frames`` of exactly the frames a sampler
  picks (the fastest available backend), no transform;
* the full pipeline: ``VideoDataset.__getitem__`` (decode + sample + transform + tensor);

for the 16-frame clip sampler (3D model) and the 4-frame segment sampler (2D model),
on the source videos and on a ``prepare``d 128-px copy. Videos are generated on the
fly in a temporary folder. Usage::

    python benchmarks/bench_data.py [--videos 24] [--reps 3] [--markdown OUT.md]
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from momentlens.data.dataset import VideoDataset
from momentlens.data.decode import open_video
from momentlens.data.encode import write_video
from momentlens.data.layout import load_split
from momentlens.data.prepare import prepare_dataset
from momentlens.data.sampling import clip_indices, segment_indices

PIPELINES = {"clip16": ("clip", 16), "seg4": ("segments", 4)}


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


def _rates(fns, items, reps: int) -> list[float]:
    """Best clips/s of each function; passes alternate between the functions so that
    machine noise (a shared VM) hits them alike."""
    for fn in fns:
        fn(items[0])  # warm up
    best = [0.0] * len(fns)
    for _ in range(reps):
        for k, fn in enumerate(fns):
            t0 = time.perf_counter()
            for it in items:
                fn(it)
            best[k] = max(best[k], len(items) / (time.perf_counter() - t0))
    return best


def bench(root: Path, reps: int, backend: str) -> dict:
    records = load_split(root, "training").records
    out = {}
    for name, (sampler, frames) in PIPELINES.items():
        ds = VideoDataset(records, sampler=sampler, frames=frames, train=True, size=112,
                          backend=backend, seed=0, decode_threads=1)

        def floor(i: int, ds=ds, sampler=sampler, frames=frames) -> None:
            rng = np.random.default_rng((0, 0, i))
            with open_video(records[i].path, backend, threads=1) as r:
                if sampler == "clip":
                    idx = clip_indices(r.num_frames, frames, 1, True, rng)
                else:
                    idx = segment_indices(r.num_frames, frames, True, rng)
                r.get_frames(idx)

        items = list(range(len(records)))
        f, p = _rates([floor, ds.__getitem__], items, reps)
        out[name] = {"floor": f, "pipeline": p, "ratio": f / p}
    return out


def machine() -> str:
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines()
                     if line.startswith("Model name"))
    except Exception:
        model = platform.processor() or "unknown CPU"
    import os

    import av
    return (f"{model}, {os.cpu_count()} cores visible, Python {platform.python_version()}, "
            f"PyAV {av.__version__} (FFmpeg {av.ffmpeg_version_info})"
            if hasattr(av, "ffmpeg_version_info") else f"{model}, {os.cpu_count()} cores")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--backend", default="pyav")
    ap.add_argument("--markdown", default=None, help="write the results table here")
    args = ap.parse_args()
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
        results = {"source": bench(src, args.reps, args.backend),
                   "prepared": bench(fast, args.reps, args.backend)}
    lines = [
        f"Machine: {machine()}. One process, single-threaded decode (`decode_threads=1`), "
        f"backend `{args.backend}`; best of {args.reps} passes over {args.videos} videos.",
        f"Source videos: H.264 (x264 veryfast, crf 23, default keyframe interval), {src_desc}. "
        f"Prepared copy: `prepare --short-side 128` ({fast_desc}, keyframe every 8 frames; "
        f"{prep_s / args.videos * 1000:.0f} ms per video to make on one core).",
        "",
        "| videos | sampler | decode floor (clips/s/core) | pipeline (clips/s/core) "
        "| pipeline cost / floor (target ≤ 1.2) |",
        "|---|---|---|---|---|",
    ]
    for kind, res in results.items():
        for name, r in res.items():
            lines.append(f"| {kind} | {name} | {r['floor']:.1f} | {r['pipeline']:.1f} "
                         f"| {r['ratio']:.2f} |")
    lines.append("")
    for name in PIPELINES:
        s = results["prepared"][name]["pipeline"] / results["source"][name]["pipeline"]
        lines.append(f"- {name}: prepared copy loads {s:.2f}x faster than the source "
                     f"(target ≥ 3x).")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text + "\n")


if __name__ == "__main__":
    main()
