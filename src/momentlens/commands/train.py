"""``momentlens train``: settings from defaults, recipe, flags and ``--set``, then a run."""

from __future__ import annotations

import argparse

FLAGS = ("data", "out", "model", "frames", "size", "epochs", "batch_size", "lr", "workers",
         "device", "pretrained", "finetune", "seed", "deterministic")


def run(args: argparse.Namespace) -> int:
    """Train (or ``--resume``) a run; exit status 130 when a signal stopped it."""
    from momentlens.engine import config as C
    from momentlens.engine import train as T

    flags = {k: getattr(args, k) for k in FLAGS}
    if args.resume:
        cfg = C.resume_config(args.resume, flags, args.set)
    else:
        cfg = C.load_config(args.config, flags, args.set)
    result = T.run(cfg, resume=bool(args.resume))
    if result.get("stopped"):
        return 130
    if "best_top1" in result and result["best_top1"] >= 0:
        print(f"best validation top-1 {100 * result['best_top1']:.1f}%; run folder "
              f"{result['run_dir']}")
    return 0
