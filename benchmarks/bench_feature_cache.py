"""Classifier-only training: an epoch on cached trunk features vs the normal loop.

With ``finetune: fc`` the trunk is frozen. ``cache_features: true`` computes each video's
pooled trunk features once and trains the head on them; the normal loop decodes the
videos and runs the frozen trunk again every epoch. Both runs use the same synthetic
data, model and settings (``momentlens.engine.train.run``); the epoch time is the
``epoch_seconds`` of ``metrics.jsonl`` (the normal loop's excludes validation, the
cached one's includes it). Issue 5 asks for an epoch at least 10x cheaper. Usage::

    python benchmarks/bench_feature_cache.py [--videos-per-class 8] [--epochs 3]
                                             [--markdown docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from momentlens.data.synth import generate
from momentlens.engine import train as T
from momentlens.engine.config import load_config

SECTION = "## Training"
BEGIN, END = "<!-- bench_feature_cache -->", "<!-- /bench_feature_cache -->"
CLASSES = ["ring", "square", "rising", "falling"]


def epoch_seconds(data: Path, out: Path, cache: bool, args: argparse.Namespace) -> dict:
    cfg = load_config(None, {
        "data": str(data), "out": str(out), "model": args.model, "width": args.width,
        "frames": args.frames, "stride": 4, "size": args.size, "batch_size": 4,
        "epochs": args.epochs, "finetune": "fc", "cache_features": cache,
        "workers": args.workers, "lr": 0.01, "device": "cpu", "val_every": 0})
    t0 = time.perf_counter()
    result = T.run(cfg)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    times = [r["epoch_seconds"] for r in rows]
    return {"epoch_seconds": times, "mean_epoch_seconds": sum(times) / len(times),
            "cache_seconds": result.get("cache_seconds"), "total_seconds":
            time.perf_counter() - t0, "val_top1": result.get("val_top1")}


def insert_block(path: Path, block: str) -> None:
    """Put ``block`` (between markers) at the end of the ``## Training`` section."""
    doc = path.read_text() if path.exists() else "# Benchmarks\n"
    text = f"{BEGIN}\n{block.strip()}\n{END}\n"
    if BEGIN in doc and END in doc:
        start, end = doc.index(BEGIN), doc.index(END) + len(END) + 1
        doc = doc[:start] + text + doc[end:]
    elif SECTION + "\n" in doc:
        start = doc.index(SECTION + "\n")
        nxt = doc.find("\n## ", start + len(SECTION))
        cut = len(doc) if nxt < 0 else nxt + 1
        doc = doc[:cut].rstrip("\n") + "\n\n" + text + ("\n" + doc[cut:] if nxt >= 0 else "")
    else:
        doc = doc.rstrip("\n") + f"\n\n{SECTION}\n\n" + text
    path.write_text(doc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="r3d18")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--videos-per-class", type=int, default=6)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--markdown", type=Path)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "synth"
        generate(data, train_per_class=args.videos_per_class, val_per_class=2, size=128,
                 num_frames=90, seed=0, classes=CLASSES)
        loop = epoch_seconds(data, Path(tmp) / "loop", False, args)
        cached = epoch_seconds(data, Path(tmp) / "cached", True, args)
    ratio = loop["mean_epoch_seconds"] / max(cached["mean_epoch_seconds"], 1e-6)
    print(json.dumps({"loop": loop, "cached": cached, "ratio": ratio}, indent=2))
    n = args.videos_per_class * len(CLASSES)
    block = "\n".join([
        "### Classifier only: cached features vs recomputing the trunk", "",
        f"`python benchmarks/bench_feature_cache.py` ({args.model} width {args.width}, "
        f"{args.frames}x{args.size}x{args.size} clips, finetune=fc, {n} training videos, "
        f"batch 4, {args.epochs} epochs, {args.workers} loader worker, CPU).", "",
        "| | epoch time (mean) | one-off cost |", "|---|---|---|",
        f"| normal loop (decode + frozen trunk + head) | {loop['mean_epoch_seconds']:.3f} s | - |",
        f"| head on cached features (`cache_features: true`) | "
        f"{cached['mean_epoch_seconds']:.4f} s | {cached['cache_seconds']:.1f} s to cache "
        f"train + val features |", "",
        f"An epoch on the cache is **{ratio:.0f}x** cheaper (target ≥ 10x); caching pays for "
        f"itself after about {cached['cache_seconds'] / loop['mean_epoch_seconds']:.1f} "
        "epochs. The cache uses the evaluation view (centre clip and crop, no flip), so it "
        "trades augmentation for speed.", ""])
    print(block)
    if args.markdown:
        insert_block(args.markdown, block)


if __name__ == "__main__":
    main()
