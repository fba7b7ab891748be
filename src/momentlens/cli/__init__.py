"""The ``momentlens`` command line: argparse and dispatch, nothing else.

Each subcommand has an ``add_<name>`` function (in :mod:`~momentlens.cli.data`,
:mod:`~momentlens.cli.training` or :mod:`~momentlens.cli.results`) that declares its
arguments and names the function of :mod:`momentlens.commands` that runs it. That module is imported only
when its command runs, so ``momentlens --help`` never imports torch or av.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from momentlens._version import __version__
from momentlens.cli import data, results, training
from momentlens.utils import MomentlensError

# --------------------------------------------------------------------------- main

# Subcommands in the order --help lists them.
_COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    training.add_demo,
    data.add_synth,
    data.add_check,
    data.add_prepare,
    data.add_stats,
    results.add_compare,
    results.add_report,
    training.add_models,
    training.add_train,
    results.add_evaluate,
    results.add_predict,
    results.add_cam,
    results.add_export,
    results.add_serve,
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
