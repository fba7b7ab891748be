"""What every parser module of the command line shares."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import import_module


def command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """``momentlens.commands.<module>.<name>``, imported when the command runs."""

    def run(args: argparse.Namespace) -> int:
        return getattr(import_module(f"momentlens.commands.{module}"), name)(args)

    return run


def add_layout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layout", default="auto", metavar="NAME",
                   help="dataset layout: auto (recognised from its files), mit, mmit, ssv2, "
                   "kinetics, ucf101, hmdb51, csv or folders")
    p.add_argument("--split-id", type=int, default=None, metavar="N",
                   help="numbered split of ucf101/hmdb51: 1, 2 or 3 (default 1)")
