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
from momentlens.engine.signals import Terminated, exit_status, raise_on_sigterm
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
    for p in sub.choices.values():
        p.formatter_class = HelpWithDefaults
    return parser


class HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Every flag's help ends with its default, unless the help already says it or there
    is none to say (a switch, no default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, argparse.SUPPRESS, []):
            return text
        return super()._get_help_string(action) or ""


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
    raise_on_sigterm()
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here for buffered output
        return status
    except BrokenPipeError:
        return _closed_pipe()
    except MomentlensError as exc:
        print(f"momentlens {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"momentlens {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated as stop:
        print(f"momentlens {args.command}: stopped by {stop}", file=sys.stderr)
        return exit_status(stop.signum)


def _closed_pipe() -> int:
    """The reader of stdout went away (``momentlens models --json | head``): stop quietly,
    as Unix tools do, with status 141 (128 + SIGPIPE). Later writes, including the
    interpreter's flush at exit, go to /dev/null instead of raising again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141
