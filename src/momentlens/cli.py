"""The ``momentlens`` command line.

One argparse entry point. Each subcommand has an ``_add_<name>`` function that
declares its arguments and a ``_run_<name>`` function that makes one thin call into
the module that does the work. Heavy imports (torch, av) happen inside ``_run_*`` so
that ``momentlens --help`` stays instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from momentlens import __version__
from momentlens.utils import MomentlensError

# --------------------------------------------------------------------------- synth


def _add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="write a synthetic dataset in the Moments-in-Time release layout",
        description="Write a synthetic dataset laid out exactly like the Moments-in-Time "
        "(Mini) release: training/ and validation/ class folders of H.264 mp4 clips, "
        "trainingSet.csv / validationSet.csv without header, moments_categories.txt, and "
        "boxes.json with the moving object's box in every frame.",
    )
    p.add_argument("out_dir", help="output folder (refused if non-empty unless --overwrite)")
    p.add_argument("--train-per-class", type=int, default=60, help="training videos per class")
    p.add_argument("--val-per-class", type=int, default=20, help="validation videos per class")
    p.add_argument("--size", type=int, default=128, help="frame width and height in pixels")
    p.add_argument("--frames", type=int, default=90, help="frames per video (90 = 3 s at 30 fps)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = one per CPU core)")
    p.add_argument("--classes", default=None,
                   help="comma-separated subset of class names (default: all)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    p.set_defaults(func=_run_synth)


def _run_synth(args: argparse.Namespace) -> int:
    from momentlens.data import synth

    classes = args.classes.split(",") if args.classes else None
    summary = synth.generate(
        args.out_dir, train_per_class=args.train_per_class, val_per_class=args.val_per_class,
        size=args.size, num_frames=args.frames, fps=args.fps, seed=args.seed,
        workers=args.workers, classes=classes, overwrite=args.overwrite,
    )
    print(synth.describe(summary))
    return 0


# --------------------------------------------------------------------------- main

# Subcommands in the order --help lists them. Later modules add their pair here.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_synth,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="momentlens",
        description="Action recognition in short videos: train, evaluate, compare and "
        "explain 2D and 3D ResNets on Moments-in-Time-style datasets.",
    )
    parser.add_argument("--version", action="version", version=f"momentlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in _COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MomentlensError as exc:
        print(f"momentlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"momentlens {args.command}: interrupted", file=sys.stderr)
        return 130
