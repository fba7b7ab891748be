"""``momentlens evaluate`` and ``momentlens predict``: a trained model on videos."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from momentlens.engine.predict import AfterEach


def run_evaluate(args: argparse.Namespace) -> int:
    """Score a split and write the evaluation folder; with ``--cam`` also localisation
    (sliding windows over each video unless ``--no-sliding``)."""
    from momentlens.engine import evaluate as E

    metrics = E.evaluate(args.model, args.data, args.out, split=args.split, clips=args.clips,
                         crops=args.crops, batch_size=args.batch_size, workers=args.workers,
                         device=args.device, cam=args.cam,
                         cam_videos_per_class=args.cam_videos, cam_sliding=not args.no_sliding,
                         precision=args.precision, backend=args.backend,
                         plots=not args.no_plots, layout=args.layout, split_id=args.split_id)
    if metrics:  # under torchrun, rank 0 writes and reports; the others return {}
        E.print_summary(metrics, args.out, plots=not args.no_plots)
    return 0


def run_predict(args: argparse.Namespace) -> int:
    """Top-k classes of each video; exit status 1 when a video could not be read. With
    ``--timeline`` also the per-window class probabilities of each video (CSV + PNG).
    Under torchrun rank 0 prints every result; the other ranks print nothing."""
    import json

    from momentlens.engine import predict as P
    from momentlens.utils import MomentlensError

    try:
        results = P.predict(args.model, args.videos, topk=args.topk, clips=args.clips,
                            device=args.device, batch_size=args.batch_size,
                            workers=args.workers, precision=args.precision,
                            backend=args.backend,
                            after_each=_timeline_writer(args) if args.timeline else None)
    except MomentlensError as exc:
        if not args.json:
            raise
        print(json.dumps({"error": " ".join(str(exc).split())}))  # the reason, one line
        return 2
    if not results:  # another process under torchrun (a search that finds none is an error)
        return 0
    print(P.format_predictions(results, as_json=args.json))
    return 1 if any("error" in r for r in results) else 0


def _timeline_writer(args: argparse.Namespace) -> AfterEach:
    """``OUT/<video stem>.timeline.csv`` and ``.png`` for each readable video; its result
    gets ``timeline: {csv, png, windows}``."""
    import sys
    from pathlib import Path

    from momentlens.engine.timeline import timeline, timeline_csv, timeline_png
    from momentlens.utils import write_bytes_atomic, write_text_atomic

    out = Path(args.out)

    def write(model: Any, meta: dict[str, Any], fast: Any, video: Path,
              result: dict[str, Any]) -> None:
        out.mkdir(parents=True, exist_ok=True)
        tl = timeline(model, meta, fast, video, args.window_s, args.stride_s)
        csv, png = out / f"{video.stem}.timeline.csv", out / f"{video.stem}.timeline.png"
        write_text_atomic(csv, timeline_csv(tl))
        write_bytes_atomic(png, timeline_png(tl, title=f"{video.name}: class probability per "
                                             f"{tl.window_s:g} s window"))
        result["timeline"] = {"csv": str(csv), "png": str(png), "windows": len(tl.starts)}
        print(f"wrote {csv} and {png} ({len(tl.starts)} windows)", file=sys.stderr)

    return write
