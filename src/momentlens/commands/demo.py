"""``momentlens demo``: the paper's 2D-vs-3D study end to end on synthetic data."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from momentlens import demo

    demo.run(args.out, device=args.device, quick=args.quick, seed=args.seed)
    return 0
