"""Where a run's CAM pointing-game misses are, on a synthetic dataset (issue 20).

For the true class's map of ``--per-class`` validation videos per class (8 frames each,
the model's window centred on each frame, as ``momentlens evaluate --cam`` scores them)
this prints, per class, the hit rate on frames whose object stays put over the model's
window and on frames where it moves (the box centre travels at least ``--moving`` of the
object's side within the window), and over all frames how far the missed maxima lie
from the box. A diagnosis, not a score: the pointing game stays the strict one.

    python benchmarks/cam_misses.py RUN DATA [--per-class 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from momentlens.cam.localize import boxed_records, peak, per_class_subset, pointing_game
from momentlens.cam.video import cam_dataset, dataset_cams, input_spec
from momentlens.data.layout import load_split
from momentlens.engine.checkpoint import load_model


def _frames(run: str, data: Path, per_class: int) -> tuple[list[tuple], int]:
    """One row per scored frame: (class, hit, miss distance px, travel / side); and the
    window's half length in source frames."""
    model, meta = load_model(run)
    spec = meta["input"]
    half = spec["frames"] * spec.get("stride", 1) // 2
    split = load_split(data, "validation")
    # the videos `evaluate --cam` scores: the first per_class of each class that have boxes
    kept, boxes = boxed_records(split, per_class_subset(split.records, per_class))
    dataset = cam_dataset(input_spec(model, meta), kept)
    rows = []
    for i, rec in enumerate(kept):
        name = split.classes[rec.label]
        cam = dataset_cams(model, meta, dataset, i, class_names=[name], topk=0, frames=8)[0]
        b = boxes[i].astype(float)
        centre, side = (b[:, :2] + b[:, 2:]) / 2, (b[:, 2:] - b[:, :2]).mean(1)
        for hm, f in zip(cam.heatmaps, cam.frame_indices):
            x0, y0, x1, y1 = b[f]
            p = peak(hm)
            if p is None or side[f] <= 0:
                continue
            y, x = p
            dist = float(np.hypot(max(x0 - x, 0, x - x1 + 1), max(y0 - y, 0, y - y1 + 1)))
            lo, hi = max(0, f - half), min(len(b) - 1, f + half)
            path = centre[lo:hi + 1]
            travel = float(np.hypot(*(path.max(0) - path.min(0)))) / side[f]
            rows.append((name, pointing_game(hm, b[f]), dist, travel))
    return rows, half


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run")
    p.add_argument("data", type=Path)
    p.add_argument("--per-class", type=int, default=10)
    p.add_argument("--moving", type=float, default=0.25,
                   help="travel over the window, as a share of the object's side")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, half = _frames(args.run, args.data, args.per_class)
    hit = np.array([r[1] for r in rows], float)
    dist = np.array([r[2] for r in rows])
    moving = np.array([r[3] >= args.moving for r in rows])
    out: dict = {"run": args.run, "window_half_frames": half, "frames": len(rows),
                 "pointing": float(hit.mean()), "classes": {}}
    print(f"{args.run}: pointing {hit.mean():.3f} over {len(rows)} frames "
          f"(window +-{half} source frames)")
    print(f"{'class':12s} {'still':>13s} {'moving':>13s}")
    for name in sorted({r[0] for r in rows}):
        m = np.array([r[0] == name for r in rows])
        cells = {}
        for label, sel in (("still", m & ~moving), ("moving", m & moving)):
            cells[label] = (float(hit[sel].mean()) if sel.any() else None, int(sel.sum()))
        out["classes"][name] = cells
        print(f"{name:12s} " + " ".join(
            f"{'-' if v is None else f'{v:.3f}':>6s} (n {n:3d})" for v, n in cells.values()))
    within = {t: float((dist <= t).mean()) for t in (0, 2, 4, 8, 16)}
    out["maximum_within_px_of_box"] = within
    print("maximum within N px of the box: " + ", ".join(f"{t}: {v:.3f}" for t, v in within.items()))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
