"""``momentlens demo``: the paper's 2D-vs-3D study end to end on synthetic data."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    import sys

    from momentlens import demo
    from momentlens.engine.signals import exit_status

    try:
        demo.run(args.out, device=args.device, quick=args.quick, seed=args.seed)
    except demo.DemoStopped as stop:
        print(f"demo stopped: {stop}; run it again to go on (the dataset, the pretraining "
              "and finished trainings are reused, the stopped one resumes from its last "
              "checkpoint)", file=sys.stderr)
        return exit_status(stop.signal)
    return 0
