"""Does a 3D run's CAM show the object late? Where in its window the evidence sits (issue 20).

Two measurements on a synthetic dataset's validation videos:

1. The **temporal profile** of the true class's logit over the 16 (or T) input frames of
   a window: ``|gradient x input|`` summed over channels and pixels, normalised per
   clip, averaged over 3 windows of every other video. Its centroid is where the
   window's evidence is centred in time; sliding-window maps are attributed to the
   window's middle frame (``T // 2``).
2. The **pointing game against shifted boxes**: each scored frame's map (the window
   centred on frame ``f``, as ``momentlens evaluate --cam`` scores it) is compared with
   the object's box at frame ``f + shift``. A negative best shift means the map shows
   where the object was earlier. For the pairs the box also changes size with the
   shift, so read the appearance classes (objects that drift at a constant size).

A diagnosis, not a score: the pointing game stays the strict one, at shift 0.

    python benchmarks/cam_lag.py RUN DATA [--per-class 10] [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from momentlens.cam.localize import boxed_records, per_class_subset, pointing_game
from momentlens.cam.video import cam_dataset, dataset_cams, input_spec
from momentlens.data.layout import load_split
from momentlens.data.synth import APPEARANCE_CLASSES
from momentlens.engine.checkpoint import load_model

SHIFTS = (-24, -18, -12, -6, 0, 6, 12)


def temporal_profile(model: torch.nn.Module, spec, dataset, records) -> np.ndarray:
    """Mean normalised ``|grad x input|`` per input frame of the true class's logit."""
    rows = []
    for i in range(0, len(records), 2):
        clips, _views, _source, _fps = dataset.eval_views(i, np.linspace(0.2, 0.8, 3))
        x = torch.from_numpy(np.ascontiguousarray(np.stack(clips[1:]).transpose(0, 4, 1, 2, 3)))
        x = spec.normalize(x).requires_grad_(True)
        model(x)[:, records[i].label].sum().backward()
        g = (x.grad * x).abs().sum(dim=(1, 3, 4)).detach()
        rows.append((g / g.sum(dim=1, keepdim=True)).numpy())
    return np.concatenate(rows).mean(axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("data", type=Path)
    ap.add_argument("--per-class", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, meta = load_model(args.run)
    model.eval()
    spec = input_spec(model, meta)
    split = load_split(args.data, "validation")
    kept, boxes = boxed_records(split, per_class_subset(split.records, args.per_class))
    dataset = cam_dataset(spec, kept)

    prof = temporal_profile(model, spec, dataset, kept)
    centre = float((prof * np.arange(len(prof))).sum())
    print("|grad x input| per input frame:", " ".join(f"{v:.3f}" for v in prof))
    print(f"centroid {centre:.2f} of 0..{len(prof) - 1}; maps are attributed to frame "
          f"{len(prof) // 2}: {(centre - len(prof) // 2) * spec.stride:+.1f} source frames")

    hits: dict[int, dict[str, list[bool]]] = {s: {} for s in SHIFTS}
    with torch.inference_mode():
        for i, rec in enumerate(kept):
            name = split.classes[rec.label]
            cam = dataset_cams(model, meta, dataset, i, class_names=[name], topk=0, frames=8)[0]
            for hm, fi in zip(cam.heatmaps, cam.frame_indices):
                for s in SHIFTS:
                    f = int(np.clip(fi + s, 0, len(boxes[i]) - 1))
                    hits[s].setdefault(name, []).append(pointing_game(hm, boxes[i][f]))
    names = sorted(hits[0])
    print("| box of frame | all | appearance classes | " + " | ".join(names) + " |")
    print("|---" * (3 + len(names)) + "|")
    for s in SHIFTS:
        per = {n: float(np.mean(v)) for n, v in hits[s].items()}
        every = np.mean([h for v in hits[s].values() for h in v])
        app = np.mean([per[n] for n in names if n in APPEARANCE_CLASSES])
        print(f"| f {s:+d} | {every:.3f} | {app:.3f} | "
              + " | ".join(f"{per[n]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    main()
