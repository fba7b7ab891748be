"""``momentlens evaluate`` and ``momentlens predict``: a trained model on videos."""

from __future__ import annotations

import argparse


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a split and write the evaluation folder; with ``--cam`` also localisation
    (sliding windows over each video unless ``--no-sliding``)."""
    from momentlens.engine import evaluate as E

    metrics = E.evaluate(args.model, args.data, args.out, split=args.split, clips=args.clips,
                         crops=args.crops, batch_size=args.batch_size, workers=args.workers,
                         device=args.device, cam=args.cam,
                         cam_videos_per_class=args.cam_videos, cam_sliding=not args.no_sliding)
    E.print_summary(metrics, args.out)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Top-k classes of each video; exit status 1 when a video could not be read."""
    from momentlens.engine import evaluate as E

    results = E.predict(args.model, args.videos, topk=args.topk, clips=args.clips,
                        device=args.device)
    print(E.format_predictions(results, as_json=args.json))
    return 1 if any("error" in r for r in results) else 0
