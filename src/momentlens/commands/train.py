"""``momentlens train``: settings from defaults, recipe, flags and ``--set``, then a run."""

from __future__ import annotations

import argparse

FLAGS = ("data", "out", "model", "frames", "size", "epochs", "batch_size", "lr", "workers",
         "device", "pretrained", "finetune", "seed", "deterministic")


def run(args: argparse.Namespace) -> int:
    """Train (or ``--resume``) a run; exit status 128 + the signal's number when SIGINT
    (130) or SIGTERM (143) stopped it after saving a checkpoint."""
    from momentlens.engine import config as C
    from momentlens.engine import train as T
    from momentlens.engine.distributed import launch_rank
    from momentlens.engine.signals import exit_status
    from momentlens.utils import MomentlensError

    if args.resume and args.overwrite:
        raise MomentlensError("--resume continues a run and --overwrite replaces it: "
                              "give one of them")

    flags = {k: getattr(args, k) for k in FLAGS}
    if args.resume:
        cfg = C.resume_config(args.resume, flags, args.set)
    else:
        cfg = C.load_config(args.config, flags, args.set)
    result = T.run(cfg, resume=bool(args.resume), overwrite=args.overwrite)
    if result.get("stopped"):
        return exit_status(result["signal"])
    # Once per run, not once per process: under torchrun only rank 0 says it.
    if "best_top1" in result and result["best_top1"] >= 0 and launch_rank() == 0:
        print(f"best validation top-1 {100 * result['best_top1']:.1f}%; run folder "
              f"{result['run_dir']}")
    return 0
